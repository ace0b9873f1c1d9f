import * as assert from 'node:assert/strict';
import { formatMapping } from '../../native-bridge/cli/report';
import type { CapturedDiagnosisConfig } from '../../native-bridge/diagnosis/capturedConfig';
import type { CaptureSource } from '../../native-bridge/diagnosis/captureSource';
import { diagnose } from '../../native-bridge/diagnosis/diagnose';
import type { CapturedRecord } from '../../native-bridge/runners/capturedRecord';
import { syntheticCaptures, type SyntheticOptions } from '../mapping/syntheticCapture';
import { DEFAULT_THRESHOLDS } from '../support/thresholds';

function config(): CapturedDiagnosisConfig {
  return {
    kind: 'captured',
    baseDir: '/src',
    target: { kind: 'dump', dump: '/dumps/target' },
    reference: { kind: 'dump', dump: '/dumps/reference' },
    mapping: {
      preset: 'llama',
      rules: [],
      ignore: [],
      targetCallTokens: [
        [0, 4],
        [4, 5],
      ],
    },
    thresholds: { ...DEFAULT_THRESHOLDS },
  };
}

function source(options: SyntheticOptions): CaptureSource {
  const { target, reference } = syntheticCaptures(options);
  const runs: Record<string, CapturedRecord[]> = { target, reference };
  return (_run, role) =>
    Promise.resolve({
      info: { framework: 'dump', model: role, records: runs[role]!.length },
      records: runs[role]!,
    });
}

describe('cross-framework diagnosis of captured runs', () => {
  it('finds no divergence when the engine computes what the reference does', async () => {
    const result = await diagnose(config(), {}, undefined, { capture: source({}) });
    assert.equal(result.series.length, 24);
    assert.ok(
      result.series.every((p) => p.relativeL2Error < 1e-6),
      'aligned pairs compare equal',
    );
    assert.equal(result.changePoint, null);
    assert.deepEqual(result.suspects, []);
    const qkv = result.mapping!.pairs.find((p) => p.key === 'model.layers.1.self_attn.qkv_proj#2')!;
    assert.deepEqual(qkv.transforms, [
      'reference: concat of model.layers.1.self_attn.q_proj#1/, model.layers.1.self_attn.k_proj#1/, model.layers.1.self_attn.v_proj#1/',
      'reference: tokens 4:5 (target call 2)',
      'reference: reshape [1, 1, 8] → [1, 8]',
    ]);
  });

  it('prints the mapping report: pairs with their transforms, unmatched records with reasons', async () => {
    const base = config();
    base.mapping.ignore = ['model.layers.1.mlp'];
    const result = await diagnose(base, {}, undefined, { capture: source({}) });
    const text = formatMapping(result.mapping!, false).join('\n');
    assert.match(
      text,
      /^Mapping \(preset llama\): 22 pairs, \d+ with rules or transforms; 3 unmatched/,
    );
    assert.match(
      text,
      /model\.layers\.0\.self_attn\.qkv_proj#1 {2}← {2}model\.layers\.0\.self_attn\.q_proj#1\/ \+ .*\[preset llama\]\n {6}reference: concat of/,
    );
    assert.match(
      text,
      /unmatched target records \(2\):\n {4}model\.layers\.1\.mlp#1\/, model\.layers\.1\.mlp#2\/: ignored by mapping\.ignore/,
    );
    assert.match(
      text,
      /unmatched reference records \(1\):\n {4}model\.layers\.1\.mlp#1\/: no target record maps to it/,
    );
  });

  it('stops the other captures when one fails, reporting the failure', async () => {
    let referenceStopped = false;
    const failing: CaptureSource = (_run, role, signal) =>
      role === 'target'
        ? Promise.reject(new Error('target helper crashed'))
        : new Promise((_resolve, reject) => {
            signal?.addEventListener('abort', () => {
              referenceStopped = true;
              reject(new Error('stopped'));
            });
          });
    await assert.rejects(
      diagnose(config(), {}, undefined, { capture: failing }),
      /target helper crashed/,
    );
    assert.ok(referenceStopped, 'the reference capture was stopped');
  });

  it('ranks the fused qkv with k and v swapped first', async () => {
    const result = await diagnose(config(), {}, undefined, {
      capture: source({ swapKvInLayer: 1 }),
    });
    assert.equal(result.suspects[0]?.module, 'model.layers.1.self_attn.qkv_proj');
    assert.equal(result.suspects[0]?.source?.file, 'qkv_proj.py');
  });

  it('measures a float32 value of a low-precision run against the run’s precision', async () => {
    // Every target value off by 2⁻¹⁰ relative: bfloat16 rounding, far beyond float32's.
    const rounded: CaptureSource = async (run, role, signal) => {
      const captured = await source({})(run, role, signal);
      if (role !== 'target') return captured;
      const records = captured.records.map((r) => ({
        ...r,
        data: Float32Array.from(r.data as Float32Array, (v) => v * (1 + 2 ** -10)),
      }));
      return { ...captured, records };
    };
    const at = (dtype: 'float32' | 'bfloat16'): CapturedDiagnosisConfig => ({
      ...config(),
      target: {
        kind: 'pytorch',
        factoryFile: '/src/f.py',
        factoryFunction: 'f',
        dtype,
        device: 'cpu',
      },
    });
    const float32 = await diagnose(at('float32'), {}, undefined, { capture: rounded });
    assert.ok(Math.min(...float32.series.map((p) => p.ratio)) > 2, 'a float32 run diverges');
    const bfloat16 = await diagnose(at('bfloat16'), {}, undefined, { capture: rounded });
    assert.ok(Math.max(...bfloat16.series.map((p) => p.ratio)) < 0.1, 'a bfloat16 run is quiet');
    assert.equal(bfloat16.changePoint, null);
    assert.deepEqual(bfloat16.suspects, []);
  });

  it('finds a bug that only the decode step shows', async () => {
    const result = await diagnose(config(), {}, undefined, {
      capture: source({ decodeBugInLayer: 0 }),
    });
    const prefill = result.series.filter((p) => p.call === 1);
    assert.ok(
      prefill.every((p) => p.ratio < 2),
      'prefill is clean',
    );
    assert.equal(result.suspects[0]?.module, 'model.layers.0.self_attn');
    assert.equal(result.series[result.suspects[0].index]!.call, 2);
  });
});
