// Cutting a byte stream into chunks for property tests: whatever the cuts, a reader must find the same.

/** The stream cut at the given points (taken modulo its length, duplicates ignored). */
export function cutAt(stream: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (stream.length ? c % stream.length : 0)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    chunks.push(stream.subarray(last, p));
    last = p;
  }
  chunks.push(stream.subarray(last));
  return chunks;
}

/** One chunk per byte. */
export function bytewise(stream: Buffer): Buffer[] {
  return [...stream].map((b) => Buffer.from([b]));
}
