import * as assert from 'node:assert/strict';
import { countMismatches, discreteRatio } from '../../native-bridge/compare/errorRatio';

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
