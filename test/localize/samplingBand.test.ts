import * as assert from 'node:assert/strict';
import { noiseDegreesOfFreedom } from '../../native-bridge/compare/errorRatio';
import { comparePair } from '../../native-bridge/compare/metrics';
import { localizeSeries } from '../../native-bridge/diagnosis/localization';
import type { SeriesPoint } from '../../native-bridge/diagnosis/result';
import { beyondSampling, samplingBand } from '../../native-bridge/localize/samplingBand';
import { assertClose } from '../support/numbers';
import { DEFAULT_THRESHOLDS } from '../support/thresholds';

/** Seeded uniform numbers in [-1, 1) (a linear congruential generator). */
function uniform(n: number, seed: number): Float64Array {
  const out = new Float64Array(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 31 - 1;
  }
  return out;
}

const gapOf = (difference: Float64Array) =>
  comparePair(difference, new Float64Array(difference.length));

describe('degrees of freedom of a measured noise norm', () => {
  it('reads about 2.5 n for uniform rounding-like differences', () => {
    const dof = noiseDegreesOfFreedom(gapOf(uniform(4096, 7)));
    assert.ok(dof > 2.2 * 4096 && dof < 2.8 * 4096, `dof ${dof}`);
  });

  it('reads about 2 when one element holds the whole difference', () => {
    const one = new Float64Array(1000);
    one[17] = 0.5;
    assertClose(noiseDegreesOfFreedom(gapOf(one)), (2 * 1000) / 999);
  });

  it('is unbounded when every element differs alike, 0 when none differs', () => {
    assert.equal(noiseDegreesOfFreedom(gapOf(new Float64Array(64).fill(0.25))), Infinity);
    assert.equal(noiseDegreesOfFreedom(gapOf(new Float64Array(64))), 0);
  });

  it('matches the spread of a ratio of two noise draws: about 1 in 10⁴ beyond the band', () => {
    // Two independent noise draws of 16 elements each: how often does their norm ratio reach the band?
    const n = 16;
    let beyond = 0;
    const trials = 20000;
    for (let t = 0; t < trials; t++) {
      const a = gapOf(uniform(n, 2 * t + 1));
      const b = gapOf(uniform(n, 2 * t + 2));
      if (a.diffNorm / b.diffNorm >= samplingBand(noiseDegreesOfFreedom(b))) beyond++;
    }
    // α = 10⁻⁴ by construction; the band read from one draw's own dof is rougher, so allow 10×.
    assert.ok(beyond <= 20, `${beyond} of ${trials} beyond the band`);
  });
});

describe('sampling band', () => {
  it('is a factor of about 2.5 over 16 Gaussian-like elements and a few per cent over 10⁴', () => {
    assertClose(samplingBand(16), Math.exp(3.719 / 4));
    assert.ok(samplingBand(1e4) < 1.04);
    assert.equal(samplingBand(undefined), 1);
    assert.equal(samplingBand(0), 1);
  });

  it('reads a ratio inside its band as noise and leaves the others as measured', () => {
    const read = beyondSampling([
      { ratio: 2.1, noiseDof: 16 },
      { ratio: 2.1, noiseDof: 5000 },
      { ratio: 2.1 },
      { ratio: 3, noiseDof: 16 },
      { ratio: 0.4, noiseDof: 4 },
    ]);
    assert.deepEqual(
      read.map((p) => p.ratio),
      [1, 2.1, 2.1, 3, 0.4],
    );
  });
});

describe('localization with the sampling band', () => {
  /** A router's 16 weights at 2.1 × noise, between modules at noise level. */
  const series = (noiseDof?: number): SeriesPoint[] =>
    [
      { index: 0, module: 'model.layers.2.input_layernorm', ratio: 1.05, inputRatio: 1 },
      {
        index: 1,
        module: 'model.layers.2.mlp.gate',
        ratio: 2.1,
        inputRatio: 1.05,
        inputIndex: 0,
        ...(noiseDof === undefined ? {} : { noiseDof }),
      },
      { index: 2, module: 'model.layers.2.mlp', ratio: 1.1, inputRatio: 2.1, inputIndex: 1 },
    ] as unknown as SeriesPoint[];

  it('names no one for a small value whose ratio noise alone reaches', () => {
    assert.deepEqual(localizeSeries(series(16), DEFAULT_THRESHOLDS).ranked, []);
  });

  it('names the same ratio read from many elements, or from an unmeasured spread', () => {
    for (const dof of [5000, undefined]) {
      const { ranked } = localizeSeries(series(dof), DEFAULT_THRESHOLDS);
      assert.equal(ranked[0]?.module, 'model.layers.2.mlp.gate', `dof ${dof}`);
      assert.equal(ranked[0]?.ratio, 2.1);
    }
  });
});
