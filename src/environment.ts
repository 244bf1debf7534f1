/**
 * The one place idns reads the process environment. The configuration (config.ts) takes `IDNS_CONFIG`
 * and its `IDNS_*` settings from here; the Ed25519 implementation is chosen here too, because that
 * choice is made as the first module loads, before any configuration exists, and in worker threads,
 * which load none.
 */

/** The environment the configuration is read from (tests pass their own to loadConfig instead). */
export function processEnvironment(): NodeJS.ProcessEnv {
  return process.env;
}

/** `IDNS_ED25519=node`: use node:crypto for Ed25519 instead of libsodium (docs/operations.md). */
export function nodeEd25519Requested(): boolean {
  return process.env.IDNS_ED25519 === 'node';
}
