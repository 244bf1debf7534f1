import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Path of the `idns` command (the compiled CLI; global-setup builds it). */
export const IDNS_BIN = fileURLToPath(new URL('../../bin/idns.js', import.meta.url));

/**
 * Bound of a child process's start (spawnServer) or whole run (runIdns) unless the caller gives one.
 * Generous on purpose: it catches a hang, and must never be reached by a machine that is merely busy
 * (two cores shared by several test runs have seen a CLI run take over 20 s).
 */
export const PROCESS_BOUND_MS = 60_000;

/** An `idns serve` child process. */
export interface ServerProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  /** Sends a signal and waits (bounded) for the process to exit. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Starts `idns serve` with the given arguments and waits (bounded) until it prints its URL. */
export async function spawnServer(args: string[], options: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, [IDNS_BIN, 'serve', '--log-level', 'warn', ...args], {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Never leave a half-started server behind a failed test.
      child.kill('SIGKILL');
      reject(new Error(`idns serve did not start within ${options.timeoutMs ?? PROCESS_BOUND_MS} ms:\n${out}`));
    }, options.timeoutMs ?? PROCESS_BOUND_MS);
    const check = () => {
      const m = /idns serving on (https?:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`idns serve exited with ${code} before starting:\n${out}`));
    });
  });
  return {
    child,
    url,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const timeout = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`idns serve did not exit within ${PROCESS_BOUND_MS} ms of ${signal}`)), PROCESS_BOUND_MS).unref(),
      );
      return Promise.race([exited, timeout]);
    },
  };
}

/** Runs the `idns` CLI to completion (bounded) and returns its exit status and output. */
export function runIdns(args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [IDNS_BIN, ...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`idns ${args.join(' ')} did not finish within ${options.timeoutMs ?? PROCESS_BOUND_MS} ms`));
    }, options.timeoutMs ?? PROCESS_BOUND_MS);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
