// The resolver library: what a microblog server embeds to resolve and check handles. This file only
// re-exports. Its import graph holds no server module (store, authority, http, cli, log) and no server
// dependency (better-sqlite3, sodium-native, hono, pino, prom-client): the `idns-resolver` package
// (deploy/resolver-package/) is built from it, and test/resolver-package.test.ts keeps it so.
// src/index.ts (`idns`) exports the same API.

// Resolving handles.
export { createResolver, Resolver, MAX_BATCH } from './resolver/resolver.js';
export type { LookupResult, VerifiedResult, BridgedResult, LookupOptions, ResolvedHandle, BatchResult, ResolveManyResult } from './resolver/resolver.js';
export type { ResolverOptions, DiscoveryOptions } from './resolver/options.js';
export { proofFromBatch, verifyProof, describeAnchor } from './resolver/proof.js';
export type { AnchorKind, BatchProof, Proof, ProofAnchor, ProofStep, Resolution, TrustAnchors } from './resolver/proof.js';
export type { NumberedEntry } from './records/history-chain.js';
export type { BridgedHandle } from './discovery/webfinger.js';

// Checking what a handle's owner signed.
export { verifyHandleSignature, verifyHandleJws } from './records/handle-signatures.js';
export type { HandleKeys, HandleSignatureCheck, HandleJwsCheck, SignatureRefused } from './records/handle-signatures.js';

// Talking to one authoritative server, and signing change requests for a handle.
export { queryAuthoritative, checkAnswer } from './client/answers.js';
export type { CheckedAnswer } from './client/answers.js';
export { signChangeRequest } from './client/requests.js';
export type { ChangeIntent } from './client/requests.js';

// Names, keys, records, zone publications.
export { parseHandle, parseHandleReference, normaliseHandle } from './names/handle.js';
export type { Handle, ParsedHandle } from './names/handle.js';
export { parseZoneName, isAtOrBelow, ROOT } from './names/zone.js';
export { generatePrivateJwk, parsePublicJwk, thumbprint } from './records/keys.js';
export type { PublicJwk, PrivateJwk } from './records/keys.js';
export type { HandleRecord, ZoneRecord, DelegationRecord, DenialRecord } from './records/types.js';
export { parseTxt as parsePublicationTxt, parseDocument as parsePublicationDocument, txtName, wellKnownUrl } from './discovery/publication.js';
export type { Publication } from './discovery/publication.js';

// Errors and time.
export { IdnsError, isIdnsError } from './errors.js';
export type { ErrorCode } from './errors.js';
export { systemClock, ManualClock } from './clock.js';
export type { Clock } from './clock.js';
