import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

/** How many slices the range below the ephemeral one is cut into: the first for the CLI (the demo), the others for test workers. */
export const PORT_SLICES = 3;

/** Ports this process handed out: never twice, so a server stopped and started again on its port finds it free of this process's others. */
const handedOut = new Set<number>();

/**
 * A port that was free a moment ago, from below the kernel's ephemeral range. The server that takes it
 * binds it again later, and in between a port of the ephemeral range (what binding port 0 gives) can
 * become the local port of any outgoing connection on the machine, held for as long as that connection
 * lives: a server started again on it (the demo's, a test's) then could not start (seen under a full
 * parallel test run). Ports below the range are only ever taken by an explicit bind. Processes that run
 * side by side take ports from their own `slice` of that range (0 … PORT_SLICES − 1; the CLI's is 0), and
 * one process never hands out a port twice, so two servers of a run do not meet on one port.
 */
export async function freePort(slice = 0): Promise<number> {
  const [low] = ephemeralRange();
  const top = low - 1;
  const bottom = Math.max(1024, top - 12_000);
  const width = Math.floor((top - bottom + 1) / PORT_SLICES);
  if (width >= 1000) {
    const from = bottom + width * (Math.abs(Math.trunc(slice)) % PORT_SLICES);
    for (let attempt = 0; attempt < 200; attempt++) {
      const port = from + randomInt(width);
      if (handedOut.has(port) || !(await canListen(port))) continue;
      handedOut.add(port);
      return port;
    }
  }
  // A range starting too low to leave room below it: any port the kernel gives.
  return listenAndClose(0);
}

/** The kernel's range of ports for outgoing connections (Linux; the usual default elsewhere). */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {
    // Not Linux: fall through to the default below.
  }
  return [32768, 60999];
}

/** True when nothing listens on the loopback port (it could be bound, and was let go again). */
export async function canListen(port: number): Promise<boolean> {
  try {
    await listenAndClose(port);
    return true;
  } catch {
    return false;
  }
}

/** Binds `port` on loopback (0: any), closes it again, and returns the port bound. */
async function listenAndClose(port: number): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve());
  });
  const bound = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return bound;
}
