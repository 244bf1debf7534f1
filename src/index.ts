// The idns library API: `import { createResolver } from 'idns'`. This file only re-exports.
// It is the resolver library (src/resolver-library.ts, also published alone as `idns-resolver`) with the
// server's Ed25519: libsodium when sodium-native loads, which verifies about twice as fast as node:crypto.
import './records/ed25519-sodium.js';

export * from './resolver-library.js';
