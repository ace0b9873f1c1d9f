import * as assert from 'node:assert/strict';
import { countMismatches, discreteRatio, errorRatio } from '../../native-bridge/compare/errorRatio';
import type { PairMetrics } from '../../native-bridge/compare/metrics';
import { roundingErrorNorm, roundToDType } from '../../native-bridge/tensors/dtypes';

describe('discrete values (indices, routing, masks)', () => {
  it('counts mismatched elements', () => {
    assert.equal(countMismatches([1, 2, 3, 4], [1, 0, 3, 5]), 2);
  });

  it('reads flips at the low-precision rate or within 1 % as noise, more as a divergence', () => {
    // 400 routing indices: one flip is within 1 %; 12 flips where rounding flips 2 is 3 ×.
    assert.equal(discreteRatio(1, 0, 400).ratio, 0.25);
    assert.equal(discreteRatio(12, 2, 400).ratio, 3);
    assert.equal(discreteRatio(12, 6, 400).ratio, 2);
    // Without a low-precision reference the floor is 1 % (at least one element).
    const alone = discreteRatio(3, undefined, 10);
    assert.deepEqual([alone.ratio, alone.noiseSource], [3, 'analytic-floor']);
  });
});

describe('the rounding guard under a measured gap', () => {
  it('rounds to float16 and bfloat16 as storing the value does', () => {
    // 1 + 2^-10 is exact in float16; 1/3 in float16 is 0x3555 = 0.333251953125.
    assert.equal(roundToDType(1 + 2 ** -10, 'float16'), 1 + 2 ** -10);
    assert.equal(roundToDType(1 / 3, 'float16'), 0.333251953125);
    assert.equal(roundToDType(-1 / 3, 'float16'), -0.333251953125);
    // bfloat16 keeps 8 significant bits: 1/3 → 0x3EAB = 0.333984375.
    assert.equal(roundToDType(1 / 3, 'bfloat16'), 0.333984375);
    // A float16 subnormal step is 2^-24.
    assert.equal(roundToDType(3 * 2 ** -25, 'float16'), 2 * 2 ** -24);
    assert.equal(roundToDType(0.1, 'float32'), Math.fround(0.1));
    assert.equal(roundingErrorNorm([0, 1, -2, 0.5, -Infinity], 'float16'), 0);
  });

  it('measures a small error against the rounding, not against a unit roundoff', () => {
    // Four values of 1/3 whose float16 rounding is 8.1e-5 each; the low-precision gap is that.
    const reference = [1 / 3, 1 / 3, 1 / 3, 1 / 3];
    const rounding = roundingErrorNorm(reference, 'float16');
    assert.ok(Math.abs(rounding - 2 * (1 / 3 - 0.333251953125)) < 1e-12);
    const pair = (diffNorm: number): PairMetrics =>
      ({ elements: 4, diffNorm, referenceNorm: 2 / 3, nonFiniteMismatches: 0 }) as PairMetrics;
    const target = pair(3 * rounding);
    const guarded = errorRatio(target, pair(rounding / 2), 'float16', {
      floorFactor: 64,
      roundingNorm: rounding,
    });
    assert.ok(Math.abs(guarded.ratio - 3) < 1e-9);
    assert.equal(guarded.noiseSource, 'low-precision-reference');
    // Guarded by the analytic floor at γ = 1 instead (u·‖Y_R‖ = 3.3e-4), the same error reads 1.5,
    // under the threshold of 2.
    assert.ok(errorRatio(target, pair(rounding / 2), 'float16', { floorFactor: 1 }).ratio < 2);
    // Without a low-precision reference the guard is not used: the analytic floor runs.
    const alone = errorRatio(target, undefined, 'float16', {
      floorFactor: 64,
      roundingNorm: rounding,
    });
    assert.equal(alone.noiseSource, 'analytic-floor');
  });
});
