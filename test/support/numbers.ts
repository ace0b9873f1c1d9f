import * as assert from 'node:assert/strict';

/** |actual − expected| ≤ atol + rtol·|expected|; NaN equals only NaN. Prints both values on failure. */
export function assertClose(
  actual: number,
  expected: number,
  { atol = 1e-9, rtol = 1e-7 }: { atol?: number; rtol?: number } = {},
  label = 'value',
): void {
  if (Number.isNaN(expected) || Number.isNaN(actual)) {
    assert.ok(
      Number.isNaN(expected) && Number.isNaN(actual),
      `${label}: expected ${expected}, got ${actual}`,
    );
    return;
  }
  if (!Number.isFinite(expected)) {
    assert.equal(actual, expected, `${label}: expected ${expected}, got ${actual}`);
    return;
  }
  const bound = atol + rtol * Math.abs(expected);
  assert.ok(
    Math.abs(actual - expected) <= bound,
    `${label}: expected ${expected} ± ${bound}, got ${actual} (off by ${Math.abs(actual - expected)})`,
  );
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), for synthetic sequences. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
