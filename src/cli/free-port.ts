import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

/**
 * A port that was free a moment ago, from below the kernel's ephemeral range. The server that takes it
 * binds it again later, and in between a port of the ephemeral range (what binding port 0 gives) can
 * become the local port of any outgoing connection on the machine, held for as long as that connection
 * lives: a server started again on it (the demo's, a test's) then could not start (seen under a full parallel
 * test run). Ports below the range are only ever taken by an explicit bind.
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const top = low - 1;
  const bottom = Math.max(1024, top - 12_000);
  if (top - bottom >= 1000) {
    for (let attempt = 0; attempt < 100; attempt++) {
      const port = bottom + randomInt(top - bottom + 1);
      if (await canListen(port)) return port;
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
