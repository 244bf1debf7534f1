// The idns library API: `import { createResolver } from 'idns'`. This file only re-exports.

// Resolving handles (microblog servers embed this).
export { createResolver, Resolver, MAX_BATCH } from './resolver/resolver.js';
export type { LookupResult, ResolvedHandle, BatchResult } from './resolver/resolver.js';
export type { ResolverOptions } from './resolver/options.js';
export { proofFromBatch, verifyProof } from './resolver/proof.js';
export type { BatchProof, Proof, ProofStep, Resolution, TrustAnchors } from './resolver/proof.js';

// Talking to one authoritative server, and signing change requests for a handle.
export { queryAuthoritative, checkAnswer } from './client/answers.js';
export type { CheckedAnswer } from './client/answers.js';
export { signChangeRequest } from './client/requests.js';
export type { ChangeIntent } from './client/requests.js';

// Names, keys, records.
export { parseHandle, normaliseHandle } from './names/handle.js';
export { parseZoneName, isAtOrBelow, ROOT } from './names/zone.js';
export { generatePrivateJwk, parsePublicJwk, thumbprint } from './records/keys.js';
export type { PublicJwk, PrivateJwk } from './records/keys.js';
export type { HandleRecord, ZoneRecord, DelegationRecord, DenialRecord } from './records/types.js';

// Errors and time.
export { IdnsError, isIdnsError } from './errors.js';
export type { ErrorCode } from './errors.js';
export { systemClock, ManualClock } from './clock.js';
export type { Clock } from './clock.js';
