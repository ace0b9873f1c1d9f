import * as assert from 'node:assert/strict';
import { localizeSeries } from '../../native-bridge/diagnosis/localization';
import type { SeriesPoint } from '../../native-bridge/diagnosis/result';
import {
  classifyPoint,
  DEFAULT_RANKING,
  largestInput,
  originOf,
  ownJump,
  rankSuspects,
  DEV_RELIABILITY,
  evidenceOf,
  evidenceReliability,
  type SeriesPointForRanking,
} from '../../native-bridge/localize/suspects';
import { assertClose } from '../support/numbers';
import { DEFAULT_THRESHOLDS } from '../support/thresholds';

const point = (
  index: number,
  module: string,
  ratio: number,
  inputRatio = 1,
  inputIndex?: number,
): SeriesPointForRanking => ({
  index,
  module,
  ratio,
  inputRatio,
  ...(inputIndex === undefined ? {} : { inputIndex }),
});

const modules = (points: SeriesPointForRanking[]) => rankSuspects(points).map((s) => s.module);

describe('rankSuspects (along the data path)', () => {
  it('ranks the module that adds the error above those that inherit it, and only those', () => {
    const points = [
      point(0, 'a', 0.5),
      point(1, 'b', 800),
      point(2, 'c', 900, 800, 1),
      point(3, 'd', 1200, 900, 2),
    ];
    const ranked = rankSuspects(points);
    assert.deepEqual(
      ranked.map((s) => s.module),
      ['b'],
    );
    assert.equal(ranked[0]!.kind, 'local');
    assertClose(ranked[0]!.ownJump, Math.log(800));
    assertClose(ranked[0]!.confidence, evidenceReliability('local'));
  });

  it('an RMSNorm whose output jumps to 20 × noise ranks above the MLP that amplifies it', () => {
    const points = [
      point(0, 'model.layers.1.post_attention_layernorm', 20, 1.1),
      point(1, 'model.layers.1.mlp.gate_proj', 300, 20, 0),
      point(2, 'model.layers.1.mlp.up_proj', 30, 20, 0),
      point(3, 'model.layers.1.mlp', 500, 300, 1),
    ];
    const ranked = rankSuspects(points);
    assert.equal(ranked[0]!.module, 'model.layers.1.post_attention_layernorm');
    // The projection that multiplies its input's error by 15 stays a suspect, behind.
    assert.deepEqual(
      ranked.map((s) => [s.module, s.kind]),
      [
        ['model.layers.1.post_attention_layernorm', 'local'],
        ['model.layers.1.mlp.gate_proj', 'amplifier'],
      ],
    );
  });

  it('a decoder layer whose child diverges is not blamed for its child', () => {
    // input_layernorm diverges; the layer's own residual add reads the attention output.
    const points = [
      point(0, 'model.layers.2.input_layernorm', 50, 1),
      point(1, 'model.layers.2.self_attn', 60, 50, 0),
      point(2, 'model.layers.2', 8, 60, 1),
      point(3, 'model.layers.3', 9, 8, 2),
    ];
    assert.deepEqual(modules(points), ['model.layers.2.input_layernorm']);
  });

  it('reports a branch divergence at 3 × noise that the residual stream dilutes one step later', () => {
    const points = [
      point(0, 'model.layers.0.mlp.up_proj', 1.0),
      point(1, 'model.layers.0.mlp.down_proj', 3.2, 1.0, 0),
      point(2, 'model.layers.0', 1.2, 3.2, 1),
      point(3, 'model.layers.1', 1.1, 1.2, 2),
    ];
    assert.deepEqual(modules(points), ['model.layers.0.mlp.down_proj']);
  });

  it('a clean sibling branch between two points of one path does not hide the first', () => {
    const points = [
      point(0, 'mlp.gate_proj', 1),
      point(1, 'mlp.act_fn', 6, 1, 0),
      point(2, 'mlp.up_proj', 1), // clean, reads the norm
      point(3, 'mlp', 7, 6, 1),
    ];
    assert.deepEqual(modules(points), ['mlp.act_fn']);
  });

  it('with two bugs, the first in data order ranks first even when the second is larger', () => {
    const points = [
      point(0, 'model.layers.0.mlp.down_proj', 6, 1),
      point(1, 'model.layers.0', 4, 6, 0),
      point(2, 'model.layers.2.self_attn', 900, 4, 1),
      point(3, 'model.layers.2', 700, 900, 2),
    ];
    assert.deepEqual(modules(points), ['model.layers.0.mlp.down_proj', 'model.layers.2.self_attn']);
  });

  it('blames the producer of a value without counterpart (a missing residual add)', () => {
    const points: SeriesPointForRanking[] = [
      point(0, 'model.layers.0', 1),
      {
        ...point(1, 'model.layers.2.input_layernorm', 400, 1),
        unpairedInput: { module: 'model.layers.1' },
      },
      point(2, 'model.layers.2.self_attn', 500, 400, 1),
    ];
    assert.deepEqual(modules(points), ['model.layers.1']);
  });

  it('under the analytic floor, names a module that multiplies the error it reads by 14', () => {
    // A bfloat16 run without a low-precision reference (γ = 64): correct modules read 1–2 u
    // (ratio 0.016–0.03); the residual add scaled in model.layers.1 reads 28 u (0.435).
    const floor = (p: SeriesPointForRanking): SeriesPointForRanking => ({
      ...p,
      noiseSource: 'analytic-floor',
      dtype: 'bfloat16',
    });
    const points = [
      floor(point(0, 'model.embed_tokens', 0.007)),
      floor(point(1, 'model.layers.0', 0.016, 1, 0)),
      floor(point(2, 'model.layers.1.self_attn', 0.031, 1, 1)),
      floor(point(3, 'model.layers.1', 0.435, 1, 2)),
      floor(point(4, 'model.layers.2.mlp', 0.6, 1, 3)),
      // A router's flipped index is no rounding: the sub-floor test skips integers.
      { ...floor(point(5, 'model.layers.2.mlp.gate', 0.9, 1, 4)), dtype: 'int64' },
    ];
    const ranked = rankSuspects(points);
    assert.deepEqual(
      ranked.map((s) => [s.module, s.kind]),
      [['model.layers.1', 'local']],
    );
    assertClose(ranked[0]!.ownJump, Math.log(0.435 / 0.031));
    assertClose(ranked[0]!.confidence, evidenceReliability('under the floor'));
    // The same point measured against a low-precision reference is judged by the threshold.
    const measured = points.map((p) => ({ ...p, noiseSource: 'low-precision-reference' }));
    assert.deepEqual(modules(measured), []);
    // A value with no compared input at 6 u is its own; the module after it, at 1.6 × (what
    // correct modules reach), is not; nor is a value under 2 u.
    assert.deepEqual(modules([floor(point(0, 'a', 0.1)), floor(point(1, 'b', 0.16, 1, 0))]), ['a']);
    assert.deepEqual(modules([floor(point(0, 'a', 0.002)), floor(point(1, 'b', 0.03, 1, 0))]), []);
  });

  it('names no one on a series within noise', () => {
    // 0.8 to 1.4: correct modules on the dev split stay under 1.37 times what they read.
    const points = Array.from({ length: 40 }, (_, i) => point(i, `m${i}`, 0.8 + (i % 4) * 0.2, 1));
    assert.deepEqual(modules(points), []);
  });

  it('names a faint local divergence: ratio and own factor both at localRatio', () => {
    const points = [
      point(0, 'norm', 1.05),
      point(1, 'attn', 1.6, 1.05, 0),
      point(2, 'mlp', 1.66, 1.6, 1),
      point(3, 'next', 1.9, 1.4, 2),
    ];
    const ranked = rankSuspects(points);
    // attn multiplies 1.05 by 1.52; mlp passes 1.6 on (×1.04); next reads 1.4 and adds ×1.36.
    assert.deepEqual(
      ranked.map((s) => [s.module, s.kind, s.under]),
      [['attn', 'local', 'threshold']],
    );
    assertClose(ranked[0]!.ownJump, Math.log(1.6 / 1.05));
    assertClose(ranked[0]!.confidence, evidenceReliability('faint local'));
    // A stricter bar drops it; the threshold rule is unchanged (2.5 over 1.9 is local).
    assert.deepEqual(rankSuspects(points, { ...DEFAULT_RANKING, localRatio: 1.7 }), []);
    // A router's top-k indices flipping 3 times where the low-precision reference flips 2 is no
    // faint divergence.
    assert.deepEqual(modules([{ ...point(0, 'gate', 1.5), dtype: 'int64' }]), []);
    assert.deepEqual(modules([{ ...point(0, 'gate', 1.5), dtype: 'float32' }]), ['gate']);
    assert.deepEqual(modules([point(0, 'a', 1.9, 1.4), point(1, 'b', 2.5, 1.9, 0)]), ['b']);
  });

  it('under the analytic floor, needs 2.5 times the error a module reads', () => {
    const floor2 = (p: SeriesPointForRanking) => ({ ...p, noiseSource: 'analytic-floor' });
    const chain = (factor: number) => [
      floor2(point(0, 'embed', 0.02)),
      floor2(point(1, 'norm', 0.02 * factor, 1, 0)),
    ];
    // A first norm re-rounding a rounded embedding reaches 2.11 on the dev split.
    assert.deepEqual(modules(chain(2.2)), []);
    const ranked = rankSuspects(chain(2.6));
    assert.deepEqual(
      ranked.map((s) => [s.module, s.under]),
      [['norm', 'analytic-floor']],
    );
  });

  it('keeps at most maxSuspects, first in data order', () => {
    const points = Array.from({ length: 8 }, (_, i) => point(i, `m${i}`, 100));
    const ranked = rankSuspects(points, { ...DEFAULT_RANKING, maxSuspects: 3 });
    assert.deepEqual(
      ranked.map((s) => s.module),
      ['m0', 'm1', 'm2'],
    );
  });

  it('scores own jump on a log scale, ignoring ratios below 1', () => {
    assertClose(ownJump(100, 10), Math.log(10));
    assert.equal(ownJump(0.5, 0.2), 0);
    assert.ok(ownJump(3, 30) < 0);
  });

  it('classifies points', () => {
    assert.equal(classifyPoint(point(0, 'a', 1.9), 2), undefined);
    assert.equal(classifyPoint(point(0, 'a', 2.5, 1.5), 2), 'local');
    assert.equal(classifyPoint(point(0, 'a', 50, 10), 2), 'amplifier');
    assert.equal(classifyPoint(point(0, 'a', 15, 10), 2), undefined);
  });

  it('reads confidence from the dev record of the evidence, shared down the ranking', () => {
    // (right + 1) / (alarms + 2): no amplifier on record reads 1/2.
    const { right, alarms } = DEV_RELIABILITY.local;
    assertClose(evidenceReliability('local'), (right + 1) / (alarms + 2));
    assertClose(evidenceReliability('amplifier'), 1 / 2);
    assert.equal(evidenceOf({ kind: 'local', under: 'threshold' }), 'faint local');
    assert.equal(evidenceOf({ kind: 'local', under: 'analytic-floor' }), 'under the floor');
    assert.equal(evidenceOf({ kind: 'local', under: 'graft' }), 'own on graft');
    // Two local divergences and an amplifier: the second takes its share of what the first leaves.
    const ranked = rankSuspects([
      point(0, 'a', 5),
      point(1, 'b', 8, 5, 0),
      point(2, 'c', 40, 8, 1),
      point(3, 'd', 1.7, 1, 0),
    ]);
    assert.deepEqual(
      ranked.map((s) => [s.module, evidenceOf(s)]),
      [
        ['a', 'local'],
        ['d', 'faint local'],
        ['c', 'amplifier'],
      ],
    );
    const first = evidenceReliability('local');
    const second = (1 - first) * evidenceReliability('faint local');
    assertClose(ranked[0]!.confidence, first);
    assertClose(ranked[1]!.confidence, second);
    assertClose(ranked[2]!.confidence, (1 - first - second) / 2);
  });

  it('traces the change point back to where its error entered', () => {
    const points = [
      point(0, 'mask', 5e4),
      point(1, 'clean', 0.3),
      point(2, 'attn', 7e4, 5e4, 0),
      point(3, 'mlp', 8e4, 7e4, 2),
    ];
    assert.equal(originOf(points, 3, 2), 0);
    assert.equal(originOf(points, 1, 2), 1);
  });

  describe('a decision flipped within noise', () => {
    // A router: scores, top-k indices (int64, ratio = flips over the low-precision reference's),
    // the experts reading both, then a residual stream that carries the other branch on.
    const routed = (flips: number) => {
      const series = [
        { ...point(0, 'mlp.gate', 1.03), dtype: 'float32' },
        { ...point(1, 'mlp.gate', flips, 1.03, 0), dtype: 'int64' },
        { ...point(2, 'mlp.experts.act_fn', 1.1), dtype: 'float32' },
      ];
      const experts = { ...point(3, 'mlp.experts', 39), dtype: 'float32' };
      const layer = { ...point(4, 'layers.0', 3.8), dtype: 'float32' };
      const withInputs = [
        ...series,
        { ...experts, ...largestInput([...series], [1, 2]) },
        { ...layer, ...largestInput([...series, experts], [3]) },
      ];
      return withInputs;
    };

    it('marks the first differing integer input, not a float or an equal one', () => {
      const [, , , experts] = routed(1);
      assert.deepEqual([experts!.decisionInput, experts!.inputIndex], [1, 2]);
      assert.equal(routed(0)[3]!.decisionInput, undefined);
    });

    it('names no one for the other branch; the flip itself is the suspect when beyond noise', () => {
      assert.deepEqual(modules(routed(1)), []);
      assert.deepEqual(modules(routed(0)), ['mlp.experts']);
      assert.equal(modules(routed(5))[0], 'mlp.gate');
    });

    it('does not push the change point onto the suspects, and says why', () => {
      const series = [
        ...routed(1),
        ...Array.from({ length: 4 }, (_, i) => point(5 + i, `layers.${i + 1}`, 3.8, 3.8, 4 + i)),
      ] as unknown as SeriesPoint[];
      const { changePoint, ranked, notes } = localizeSeries(series, DEFAULT_THRESHOLDS);
      assert.equal(changePoint?.module, 'mlp.experts');
      assert.deepEqual(ranked, []);
      assert.match(
        notes.join('\n'),
        /#3 mlp\.experts follows a decision that flips within noise \(#1 /,
      );
    });
  });
});

describe("rankSuspects with grafts (a leaf run on the reference's inputs)", () => {
  const grafted = (p: SeriesPointForRanking, ownRatio: number) => ({ ...p, ownRatio });

  it('names a leaf whose own ratio reaches localRatio though the run reads it under every bar', () => {
    const points = [
      grafted(point(0, 'norm', 1.05), 1),
      grafted(point(1, 'up_proj', 1.26, 1.05, 0), 1.71),
      grafted(point(2, 'down_proj', 1.14, 1.26, 1), 1),
    ];
    const ranked = rankSuspects(points);
    assert.deepEqual(
      ranked.map((s) => [s.module, s.kind, s.under]),
      [['up_proj', 'local', 'graft']],
    );
    assertClose(ranked[0]!.ownJump, Math.log(1.71));
    // Just under the bar, and without a graft, nothing is named.
    assert.deepEqual(modules([grafted(point(0, 'up_proj', 1.26), 1.49)]), []);
    assert.deepEqual(modules([point(0, 'up_proj', 1.26)]), []);
    // A decision is never a graft divergence (its ratio counts flips, not rounding).
    assert.deepEqual(modules([{ ...grafted(point(0, 'gate', 1.2), 3), dtype: 'int64' }]), []);
  });

  it('a leaf the run reads as local but whose graft is within noise goes after every other suspect', () => {
    const points = [
      grafted(point(0, 'q_proj', 3, 1), 1.02),
      point(1, 'attn', 2.6, 1),
      grafted(point(2, 'mlp.up_proj', 12, 2.6, 1), 8),
    ];
    const ranked = rankSuspects(points);
    assert.deepEqual(
      ranked.map((s) => s.module),
      ['attn', 'mlp.up_proj', 'q_proj'],
    );
    assert.equal(ranked[2]!.cleared, true);
    // Alone it is still named: the change point's module stays among the suspects.
    assert.deepEqual(modules([grafted(point(0, 'q_proj', 3, 1), 1.02)]), ['q_proj']);
  });
});
