import * as assert from 'node:assert/strict';
import { detectChangePoint, pelt, robustSigma } from '../../native-bridge/localize/changePoint';
import { seededRandom } from '../support/numbers';

/** Ratios of correct modules: log-normal around 0.6, i.e. comfortably inside the noise band. */
function noise(count: number, seed: number): number[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => 0.6 * Math.exp(0.4 * (random() - 0.5) * 2));
}

describe('pelt', () => {
  it('finds the exact split of a clean step', () => {
    assert.deepEqual(pelt([0, 0, 0, 5, 5, 5], 1), [3]);
  });

  it('finds two splits and none on a constant', () => {
    assert.deepEqual(pelt([0, 0, 0, 4, 4, 4, 1, 1, 1], 1), [3, 6]);
    assert.deepEqual(pelt([2, 2, 2, 2], 1), []);
  });

  it('estimates σ robustly (one outlier does not move it)', () => {
    const y = [0, 0.1, 0, 0.1, 0, 0.1, 0, 0.1, 50, 0.1, 0];
    const sigma = robustSigma(y);
    assert.ok(sigma > 0.05 && sigma < 0.15, `σ = ${sigma}`);
  });
});

describe('detectChangePoint', () => {
  it('flags the start of a step', () => {
    const ratios = [...noise(30, 1), ...noise(20, 2).map((r) => r * 2000)];
    const result = detectChangePoint(ratios);
    assert.equal(result.index, 30);
  });

  it('flags a ramp where it becomes persistently elevated, not at its end', () => {
    const ramp = Array.from({ length: 20 }, (_, k) => 10 ** ((3 * (k + 1)) / 20));
    const ratios = [...noise(20, 3), ...ramp, ...noise(10, 4).map((r) => r * 1500)];
    const result = detectChangePoint(ratios);
    assert.ok(
      result.index !== null && result.index >= 20 && result.index <= 24,
      `index ${result.index}`,
    );
  });

  it('does not flag a single spike that falls back to noise', () => {
    const ratios = noise(40, 5);
    ratios[15] = 1e4;
    const result = detectChangePoint(ratios);
    assert.equal(result.index, null);
    assert.deepEqual(result.spikes, [15]);
  });

  it('keeps a run going while inherited error stays above the exit level (hysteresis)', () => {
    // The guilty module jumps to ~10, everything after it settles just under the entry threshold.
    const ratios = [
      ...noise(30, 9).map(() => 1),
      10,
      9.2,
      ...Array.from({ length: 20 }, (_, i) => 1.8 + 0.2 * (i % 2)),
    ];
    assert.equal(detectChangePoint(ratios).index, 30);
    // Falling back to noise ends the run: a spike of two.
    const back = [...noise(30, 9).map(() => 1), 10, 9.2, ...noise(20, 10)];
    const result = detectChangePoint(back);
    assert.equal(result.index, null);
    assert.deepEqual(result.spikes, [30]);
  });

  it('does not flag pure noise', () => {
    for (let seed = 10; seed < 20; seed++) {
      assert.equal(detectChangePoint(noise(200, seed)).index, null, `seed ${seed}`);
    }
  });

  it('flags a short run that reaches the end (a bug in the last modules)', () => {
    const ratios = [...noise(30, 6), 900, 950];
    assert.equal(detectChangePoint(ratios).index, 30);
  });

  it('honours a custom threshold', () => {
    const ratios = [...noise(20, 7), ...noise(20, 8).map((r) => r * 5)]; // 2–4.5 after the step
    assert.equal(detectChangePoint(ratios).index, 20);
    assert.equal(
      detectChangePoint(ratios, { threshold: 6, minRun: 3, penaltyScale: 2, minSigma: 0.1 }).index,
      null,
    );
  });

  it('handles empty and all-elevated sequences', () => {
    assert.equal(detectChangePoint([]).index, null);
    assert.equal(detectChangePoint([500, 600, 700, 800]).index, 0);
  });
});
