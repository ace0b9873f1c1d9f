import * as assert from 'node:assert/strict';
import { errorRatio, RATIO_CAP } from '../../native-bridge/compare/errorRatio';
import { comparePair, unflattenIndex } from '../../native-bridge/compare/metrics';
import {
  bfloat16BitsToNumber,
  float16BitsToNumber,
  toFloatArray,
  UNIT_ROUNDOFF,
} from '../../native-bridge/tensors/dtypes';
import { assertClose, seededRandom } from '../support/numbers';

describe('comparePair', () => {
  it('matches hand-computed metrics', () => {
    const m = comparePair(Float32Array.of(1, 2, 3), Float32Array.of(1, 2, 4));
    assertClose(m.diffNorm, 1);
    assertClose(m.referenceNorm, Math.sqrt(21));
    assertClose(m.relativeL2Error, 1 / Math.sqrt(21));
    assertClose(m.cosineSimilarity, 17 / Math.sqrt(14 * 21));
    assert.equal(m.maxAbsError, 1);
    assert.equal(m.maxAbsErrorIndex, 2);
    assert.equal(m.nonFiniteMismatches, 0);
  });

  it('reports identical tensors as exact', () => {
    const m = comparePair(Float32Array.of(0.5, -2), Float32Array.of(0.5, -2));
    assert.equal(m.relativeL2Error, 0);
    assertClose(m.cosineSimilarity, 1);
    assert.equal(m.maxAbsError, 0);
  });

  it('handles all-zero sides', () => {
    assert.equal(comparePair(Float32Array.of(0, 0), Float32Array.of(0, 0)).cosineSimilarity, 1);
    const onlyTarget = comparePair(Float32Array.of(1, 0), Float32Array.of(0, 0));
    assert.equal(onlyTarget.cosineSimilarity, 0);
    assert.equal(onlyTarget.relativeL2Error, Infinity);
  });

  it('counts NaN and Inf on each side and keeps them out of the norms', () => {
    const t = Float32Array.of(NaN, Infinity, 1, -Infinity, NaN);
    const r = Float32Array.of(NaN, Infinity, 1, Infinity, 3);
    const m = comparePair(t, r);
    assert.deepEqual(m.target, { nan: 2, inf: 2 });
    assert.deepEqual(m.reference, { nan: 1, inf: 2 });
    // Agreeing: NaN/NaN, +Inf/+Inf. Mismatching: -Inf vs +Inf, NaN vs 3.
    assert.equal(m.nonFiniteMismatches, 2);
    assert.equal(m.diffNorm, 0);
    assert.equal(m.referenceNorm, 1);
  });

  it('counts elements outside atol + rtol·|r|', () => {
    const m = comparePair(Float32Array.of(1, 2.5, 100.02, NaN), Float32Array.of(1, 2, 100, 0), {
      atol: 0.1,
      rtol: 1e-3,
      referenceLimit: Infinity,
    });
    // 2.5 vs 2 is outside 0.1 + 0.002; 100.02 vs 100 is inside 0.1 + 0.1; NaN vs 0 always fails.
    assert.equal(m.toleranceViolations, 2);
  });

  it('clamps the reference to the range the target can hold', () => {
    const mask = comparePair(Float32Array.of(-65504, 0), Float32Array.of(-3.4e38, 0), {
      atol: 1e-5,
      rtol: 1e-5,
      referenceLimit: 65504,
    });
    assert.equal(mask.diffNorm, 0);
    assert.equal(mask.referenceNorm, 65504);
  });

  it('clamps only finite values: the same infinity on both sides agrees under any limit', () => {
    // An additive causal mask: -inf above the diagonal in both runs.
    const mask = Float32Array.of(0, -Infinity, -Infinity, 0, 0, -Infinity, Infinity);
    for (const referenceLimit of [Infinity, 65504, 3.39e38]) {
      const m = comparePair(mask, Float32Array.from(mask), { atol: 0, rtol: 0, referenceLimit });
      assert.equal(m.nonFiniteMismatches, 0, `limit ${referenceLimit}`);
      assert.equal(m.toleranceViolations, 0);
      assert.equal(m.diffNorm, 0);
      assert.deepEqual(m.reference, { nan: 0, inf: 4 });
      const ratio = errorRatio(m, undefined, 'float32');
      assert.equal(ratio.ratio, 0);
    }
  });

  it('reads a float16 overflow to -inf of a float32 sentinel beyond its range as saturation', () => {
    const m = comparePair(Float32Array.of(-Infinity, 1), Float32Array.of(-3.4e38, 1), {
      atol: 1e-5,
      rtol: 1e-5,
      referenceLimit: 65504,
    });
    assert.equal(m.nonFiniteMismatches, 0);
    // Opposite signs are a real mismatch.
    const flipped = comparePair(Float32Array.of(Infinity, 1), Float32Array.of(-3.4e38, 1), {
      atol: 1e-5,
      rtol: 1e-5,
      referenceLimit: 65504,
    });
    assert.equal(flipped.nonFiniteMismatches, 1);
  });

  it('agrees with a naive float64 loop on large random tensors, with and without a NaN', () => {
    const random = seededRandom(42);
    const n = 20_000; // several blocks of the fast pass
    const t = new Float32Array(n);
    const r = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      r[i] = (random() - 0.5) * 10;
      t[i] = r[i]! + (random() - 0.5) * 1e-3;
    }
    t[13_579] = r[13_579]! + 0.5; // the largest difference, in the fourth block
    const naive = (skip: number) => {
      let d2 = 0;
      let r2 = 0;
      for (let i = 0; i < n; i++) {
        if (i === skip) continue;
        d2 += (t[i]! - r[i]!) ** 2;
        r2 += r[i]! ** 2;
      }
      return Math.sqrt(d2) / Math.sqrt(r2);
    };
    const fast = comparePair(t, r);
    assertClose(fast.relativeL2Error, naive(-1), { rtol: 1e-12 }, 'relative L2');
    assert.equal(fast.maxAbsErrorIndex, 13_579);
    t[7] = NaN; // forces the careful pass
    const careful = comparePair(t, r);
    assertClose(careful.relativeL2Error, naive(7), { rtol: 1e-12 }, 'relative L2 without the NaN');
    assert.equal(careful.maxAbsErrorIndex, 13_579);
    assert.equal(careful.target.nan, 1);
  });

  it('refuses arrays of different lengths', () => {
    assert.throws(
      () => comparePair(new Float32Array(2), new Float32Array(3)),
      /element counts differ/,
    );
  });
});

describe('unflattenIndex', () => {
  it('turns a flat index into a row-major one', () => {
    assert.deepEqual(unflattenIndex(17, [2, 3, 4]), [1, 1, 1]);
    assert.deepEqual(unflattenIndex(0, [5]), [0]);
    assert.deepEqual(unflattenIndex(23, [2, 3, 4]), [1, 2, 3]);
  });
});

describe('16-bit floats', () => {
  it('decodes IEEE binary16', () => {
    assert.equal(float16BitsToNumber(0x3c00), 1);
    assert.equal(float16BitsToNumber(0xc000), -2);
    assert.equal(float16BitsToNumber(0x7bff), 65504);
    assert.equal(float16BitsToNumber(0x0001), 2 ** -24);
    assert.equal(float16BitsToNumber(0x7c00), Infinity);
    assert.equal(float16BitsToNumber(0xfc00), -Infinity);
    assert.ok(Number.isNaN(float16BitsToNumber(0x7e00)));
  });

  it('decodes bfloat16', () => {
    assert.equal(bfloat16BitsToNumber(0x3f80), 1);
    assert.equal(bfloat16BitsToNumber(0xc040), -3);
    assert.equal(bfloat16BitsToNumber(0x7f80), Infinity);
  });

  it('converts whole fp16 arrays for comparison', () => {
    const decoded = toFloatArray('float16', Uint16Array.of(0x3c00, 0x4000, 0x3800));
    assert.deepEqual([...decoded], [1, 2, 0.5]);
  });
});

describe('errorRatio', () => {
  const target = comparePair(Float32Array.of(3, 4.03), Float32Array.of(3, 4)); // diff 0.03, ‖r‖ 5

  it('divides by the low-precision reference gap when it is above the floor', () => {
    const gap = comparePair(Float32Array.of(3, 4.01), Float32Array.of(3, 4)); // 0.01
    const r = errorRatio(target, gap, 'float32', { floorFactor: 64 });
    assertClose(r.ratio, 3, { rtol: 1e-4 }, 'ratio'); // float32 inputs: 4.03f − 4 ≠ 0.03 exactly
    assert.equal(r.noiseSource, 'low-precision-reference');
  });

  it('falls back to the analytic floor γ·u·‖reference‖', () => {
    const r = errorRatio(target, undefined, 'float16', { floorFactor: 8 });
    const floor = 8 * UNIT_ROUNDOFF.float16 * (5 + Math.SQRT2 * 2 ** -14);
    assertClose(r.noise, floor);
    assertClose(r.ratio, 0.03 / floor, { rtol: 1e-5 });
    assert.equal(r.noiseSource, 'analytic-floor');
  });

  it('keeps a floor for an all-zero reference (subnormal residue is noise)', () => {
    const tiny = comparePair(Float32Array.of(1e-44, 0), Float32Array.of(0, 0)); // subnormal residue
    assert.ok(errorRatio(tiny, undefined, 'float32').ratio < 1);
    const real = comparePair(Float32Array.of(1e-3, 0), Float32Array.of(0, 0));
    assert.ok(errorRatio(real, undefined, 'float32').ratio > 1e6);
  });

  it('caps unexplained non-finite divergences', () => {
    const nan = comparePair(Float32Array.of(NaN, 4), Float32Array.of(3, 4));
    assert.equal(errorRatio(nan, undefined, 'float32').ratio, RATIO_CAP);
    // The same NaN in the low-precision reference explains it: back to a finite ratio.
    assert.ok(errorRatio(nan, nan, 'float32').ratio < RATIO_CAP);
  });
});
