import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { clientKeyOf } from './rate-limits.js';

/** What a connection guard needs to know. */
export interface ConnectionGuardOptions {
  /** Most connections open at once per client address (IPv6: per /64); null: no per-address cap. */
  perAddress: number | null;
  /** Time from accepting a connection to the end of its first request's headers, ms. */
  headersTimeoutMs: number;
  /** The server speaks TLS: the handshake counts in the time to the first request's headers. */
  tls: boolean;
  /** Called for every connection refused at accept time because its address has too many open. */
  onRefused: () => void;
  /**
   * Called when a TLS connection has not sent its first request's headers in time: with the TLS socket
   * once the handshake is done (an HTTP answer can still be written), else with the raw socket. It
   * closes the connection.
   */
  onTimeout: (socket: Socket, secured: boolean) => void;
}

const kDeadline = Symbol('idns.firstRequestDeadline');
interface Deadline {
  timer: NodeJS.Timeout;
  secured: TLSSocket | null;
}
type WithDeadline = { [kDeadline]?: Deadline | undefined };

/**
 * Admits connections at accept time and bounds how long a TLS connection may take to its first request.
 *
 * The per-address table holds only addresses with a connection open right now (an entry goes when its
 * last connection closes), so its size is bounded by the server's `maxConnections`, whatever the number
 * of addresses seen. Plain HTTP needs no deadline of its own: Node's parser counts `headersTimeout`
 * from the accept (server.ts checks it often enough). Over TLS the parser starts only after the
 * handshake, so the handshake and the first headers together would get twice the limit: the guard
 * counts from the accept instead.
 */
export class ConnectionGuard {
  private readonly open = new Map<string, number>();
  /** TLS connections not yet secured, by peer address and port: at most one entry per open connection. */
  private readonly handshaking = new Map<string, Deadline>();

  constructor(private readonly options: ConnectionGuardOptions) {}

  /** The server's 'connection' listener (a raw TCP socket, TLS or not). */
  readonly accept = (socket: Socket): void => {
    const address = socket.remoteAddress;
    // Without an address the peer has already gone; there is nothing to serve.
    if (address === undefined) {
      socket.destroy();
      return;
    }
    const { perAddress, tls, headersTimeoutMs } = this.options;
    if (perAddress !== null) {
      const key = clientKeyOf(address);
      const n = this.open.get(key) ?? 0;
      if (n >= perAddress) {
        this.options.onRefused();
        socket.destroy();
        return;
      }
      this.open.set(key, n + 1);
      socket.once('close', () => this.release(key));
    }
    if (tls) {
      const deadline: Deadline = {
        timer: setTimeout(() => {
          if (deadline.secured) this.options.onTimeout(deadline.secured, true);
          else this.options.onTimeout(socket, false);
        }, headersTimeoutMs),
        secured: null,
      };
      const peer = `${address}|${socket.remotePort}`;
      this.handshaking.set(peer, deadline);
      socket.once('close', () => {
        clearTimeout(deadline.timer);
        if (this.handshaking.get(peer) === deadline) this.handshaking.delete(peer);
      });
    }
  };

  /**
   * The server's 'secureConnection' listener: the first-request deadline moves to the TLS socket, where
   * the request handler finds it. The TLS socket is found by its peer's address and port, which are
   * those of the raw socket under it (Node's link between the two is private).
   */
  readonly secured = (tlsSocket: TLSSocket): void => {
    const peer = `${tlsSocket.remoteAddress}|${tlsSocket.remotePort}`;
    const deadline = this.handshaking.get(peer);
    if (deadline === undefined) return;
    this.handshaking.delete(peer);
    deadline.secured = tlsSocket;
    (tlsSocket as WithDeadline)[kDeadline] = deadline;
  };

  /** Called with every request: the connection has sent a whole request head in time. */
  requestArrived(req: IncomingMessage): void {
    const socket = req.socket as Socket & WithDeadline;
    const deadline = socket[kDeadline];
    if (deadline !== undefined) {
      clearTimeout(deadline.timer);
      socket[kDeadline] = undefined;
    }
  }

  private release(key: string): void {
    const n = (this.open.get(key) ?? 1) - 1;
    if (n <= 0) this.open.delete(key);
    else this.open.set(key, n);
  }

  /** Addresses with a connection open (for tests of the bound). */
  get addresses(): number {
    return this.open.size;
  }

  /** Connections open from `address`'s key (for tests). */
  openFrom(address: string): number {
    return this.open.get(clientKeyOf(address)) ?? 0;
  }
}
