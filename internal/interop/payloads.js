// payloads.js — the deterministic payloads both Node peers send
// (node_peer.js over ws, node_h2_peer.js over HTTP/2), so that the Go tests
// can check them byte for byte.
'use strict';

// Deterministic PRNG (xorshift32).
function prng(seed) {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

function makeBinary(size, seed) {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(size);
  let i = 0;
  for (; i + 4 <= size; i += 4) b.writeUInt32LE(r(), i);
  for (; i < size; i++) b[i] = r() & 0xff;
  return b;
}

// Valid UTF-8 of exactly `size` bytes, mixing 1-, 2-, 3- and 4-byte chars.
const UTF8_POOL = ['a', 'Z', '0', ' ', '~', 'é', 'ß', 'Ж', 'ع', '€', '中', '文', '✓', '😀', '🚀', '𝄞'].map((c) => Buffer.from(c, 'utf8'));
function makeText(size, seed) {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(size);
  let i = 0;
  while (i < size) {
    const c = UTF8_POOL[r() % UTF8_POOL.length];
    if (i + c.length > size) { b[i++] = 0x61 + (r() % 26); continue; }
    c.copy(b, i);
    i += c.length;
  }
  return b;
}

module.exports = { prng, makeBinary, makeText };
