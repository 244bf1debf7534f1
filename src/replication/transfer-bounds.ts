import type { Dispatcher } from 'undici';
import { IdnsError } from '../errors.js';

/** Bytes a transfer line may add to its record's digest element (the NDJSON envelope is 46, compact 1). */
export const LINE_OVERHEAD = 64;

/**
 * Bounds one transfer by bytes and by total time, whatever the source does: the body is cut when it
 * brings more than `maxBytes` (which the start line may lower, from the signed zone record) or when
 * `maxMs` pass, so a source that streams without end, or slowly without end, costs at most that.
 * (undici's bodyTimeout only bounds the pause between two chunks.)
 */
export class TransferBounds {
  bytes = 0;
  private readonly timer: NodeJS.Timeout;
  private expired = false;

  constructor(
    private readonly body: Dispatcher.ResponseData['body'],
    private maxBytes: number,
    private readonly maxMs: number,
  ) {
    this.timer = setTimeout(() => {
      this.expired = true;
      body.destroy(this.timeError());
    }, maxMs);
    this.timer.unref();
  }

  /** Lowers the byte bound (never raises it): what the signed zone record lets the transfer bring. */
  limit(maxBytes: number, why: string): void {
    if (maxBytes < this.maxBytes) {
      this.maxBytes = maxBytes;
      this.why = why;
    }
    this.checkBytes();
  }

  private why = 'the configured bound (transfers.maxBytes)';

  /** The body, counted chunk by chunk. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    for await (const chunk of this.body as AsyncIterable<Uint8Array>) {
      if (this.expired) throw this.timeError();
      this.bytes += chunk.byteLength;
      this.checkBytes();
      yield chunk;
    }
    if (this.expired) throw this.timeError();
  }

  /** Stops the timer (the transfer is over, whichever way). */
  close(): void {
    clearTimeout(this.timer);
  }

  private checkBytes(): void {
    if (this.bytes > this.maxBytes) {
      throw new IdnsError('transfer_failed', `the transfer brought more than ${this.maxBytes} bytes, ${this.why}; transfer refused`);
    }
  }

  private timeError(): IdnsError {
    return new IdnsError('transfer_failed', `the transfer took longer than ${this.maxMs / 1000} s (transfers.maxSeconds); transfer refused`);
  }
}
