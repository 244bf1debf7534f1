import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { Agent } from './client/undici.js';
import type { ServerConfig } from './config.js';
import { IdnsError } from './errors.js';

/** The server's certificate and key, read once at start-up; null when serving plain HTTP. */
export function serverCredentials(config: ServerConfig): { cert: Buffer; key: Buffer } | null {
  if (config.tls.cert === null || config.tls.key === null) return null;
  return { cert: readPem(config.tls.cert, 'tls cert'), key: readPem(config.tls.key, 'tls key') };
}

/**
 * The CA certificates outbound connections trust: the system's, plus the configured extra ones (a
 * private CA for a private deployment or a test). Undefined when none is configured (Node's default).
 */
export function trustedCas(config: ServerConfig): string[] | undefined {
  if (config.tls.ca.length === 0) return undefined;
  return [...rootCertificates, ...config.tls.ca.map((f) => readPem(f, 'ca').toString('utf8'))];
}

/** A keep-alive HTTP agent trusting `ca` (when given) for outbound connections. */
export function outboundAgent(ca: string[] | undefined, connections: number): Agent {
  return new Agent({ keepAliveTimeout: 10_000, connections, ...(ca ? { connect: { ca } } : {}) });
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new IdnsError('invalid_config', `${what}: cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
}
