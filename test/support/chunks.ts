/** Cuts `bytes` into chunks of the given sizes in turn (the rest as one last chunk): a stream as a network might deliver it. */
export function chunked(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let at = 0;
  for (const c of cuts) {
    if (at >= bytes.length) break;
    chunks.push(bytes.subarray(at, at + c));
    at += c;
  }
  if (at < bytes.length) chunks.push(bytes.subarray(at));
  return chunks;
}
