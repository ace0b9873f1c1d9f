import * as assert from 'node:assert/strict';
import {
  canonicalModulePath,
  checkPremise,
  planMapping,
  type RecordMeta,
} from '../../native-bridge/mapping/mapRecords';
import { matchPattern, substitute } from '../../native-bridge/mapping/pathPattern';
import { PRESETS } from '../../native-bridge/mapping/presets';
import { combine, permute, sliceAxis } from '../../native-bridge/mapping/transforms';
import { syntheticCaptures } from './syntheticCapture';

const preset = PRESETS.llama!.map((rule) => ({ rule, origin: 'preset llama' }));

describe('module path patterns', () => {
  it('binds layer numbers and substitutes offsets', () => {
    const bindings = matchPattern('model.layers.{N}.self_attn.qkv_proj', {
      module: 'model.layers.12.self_attn.qkv_proj',
      output: '',
    });
    assert.deepEqual(bindings, { N: 12 });
    assert.deepEqual(substitute('model.layers.{N-1}:1', bindings), {
      module: 'model.layers.11',
      output: '1',
    });
    assert.equal(substitute('model.layers.{N-1}', { N: 0 }), undefined);
    assert.equal(
      matchPattern('model.layers.{N}:1', { module: 'model.layers.3', output: '0' }),
      null,
    );
    assert.deepEqual(matchPattern('model.*.norm', { module: 'model.x.norm', output: '0' }), {});
  });

  it('canonicalizes other families’ containers', () => {
    assert.equal(canonicalModulePath('transformer.h.3.attn'), 'model.layers.3.self_attn');
    assert.equal(canonicalModulePath('model.decoder.layers.1.fc1'), 'model.layers.1.fc1');
  });
});

describe('alignment transforms', () => {
  it('concatenates on the last axis, sums, slices tokens and permutes', () => {
    const a = { data: Float32Array.from([1, 2, 3, 4]), shape: [2, 2] };
    const b = { data: Float32Array.from([5, 6]), shape: [2, 1] };
    assert.deepEqual([...combine([a, b], 'concat').data], [1, 2, 5, 3, 4, 6]);
    assert.deepEqual([...combine([a, a], 'sum').data], [2, 4, 6, 8]);
    const sliced = sliceAxis(
      { data: Float32Array.from([0, 1, 2, 3, 4, 5]), shape: [1, 3, 2] },
      1,
      1,
      3,
    );
    assert.deepEqual(sliced.shape, [1, 2, 2]);
    assert.deepEqual([...sliced.data], [2, 3, 4, 5]);
    const t = permute({ data: Float32Array.from([0, 1, 2, 3, 4, 5]), shape: [2, 3] }, [1, 0]);
    assert.deepEqual(t.shape, [3, 2]);
    assert.deepEqual([...t.data], [0, 3, 1, 4, 2, 5]);
    const silu = combine(
      [
        { data: Float32Array.from([0, 1]), shape: [2] },
        { data: Float32Array.from([2, 3]), shape: [2] },
      ],
      'silu-mul',
    );
    assert.deepEqual(
      [...silu.data].map((v) => Number(v.toFixed(6))),
      [0, Number((3 / (1 + Math.exp(-1))).toFixed(6))],
    );
  });
});

describe('mapping serving-engine records onto HuggingFace records', () => {
  it('pairs fused, tuple and per-step records with the llama preset, listing what is left', () => {
    const { target, reference, calls } = syntheticCaptures();
    const plan = planMapping(target, reference, { rules: preset, targetCallTokens: calls });
    const byKey = new Map(plan.pairs.map((p) => [p.key, p]));
    const qkv = byKey.get('model.layers.1.self_attn.qkv_proj#2')!;
    assert.deepEqual(qkv.reference, [
      'model.layers.1.self_attn.q_proj#1/',
      'model.layers.1.self_attn.k_proj#1/',
      'model.layers.1.self_attn.v_proj#1/',
    ]);
    assert.equal(qkv.referenceCombine, 'concat');
    assert.deepEqual(qkv.tokens, [4, 5]);
    assert.deepEqual(byKey.get('model.layers.0.input_layernorm#1:1')!.reference, [
      'model.embed_tokens#1/',
    ]);
    assert.deepEqual(byKey.get('model.layers.1.input_layernorm#1:1')!.reference, [
      'model.layers.0#1/',
    ]);
    const layer = byKey.get('model.layers.1#1')!;
    assert.deepEqual(layer.target, ['model.layers.1#1/0', 'model.layers.1#1/1']);
    assert.equal(layer.targetCombine, 'sum');
    assert.ok(!byKey.has('model.layers.1#1:1'), 'the residual item is consumed by the sum');
    assert.equal(byKey.get('model.layers.0.mlp#1')!.origin, 'same path');
    // 2 layers × 2 calls × (norm, residual, qkv, attn, mlp, layer) pairs; nothing unpaired.
    assert.equal(plan.pairs.length, 24);
    assert.deepEqual(
      plan.unmatched.filter((u) => u.side === 'target'),
      [],
    );
  });

  it('lets user rules win and lists every unmatched record with its reason', () => {
    const { target, reference, calls } = syntheticCaptures();
    const plan = planMapping(target, reference, {
      rules: [
        {
          rule: { target: 'model.layers.{N}.mlp', reference: 'model.layers.{N}.self_attn' },
          origin: 'rule 1 (ekka.json)',
        },
        ...preset,
      ],
      ignore: ['model.layers.0.self_attn'],
      targetCallTokens: calls,
    });
    const mlp = plan.pairs.find((p) => p.key === 'model.layers.0.mlp#1')!;
    assert.equal(mlp.origin, 'rule 1 (ekka.json)');
    assert.deepEqual(mlp.reference, ['model.layers.0.self_attn#1/']);
    const ignored = plan.unmatched.filter((u) => u.reason === 'ignored by mapping.ignore');
    assert.equal(ignored.length, 2);
    const unused = plan.unmatched.find(
      (u) => u.side === 'reference' && u.module === 'model.layers.0.mlp',
    );
    assert.equal(unused?.reason, 'no target record maps to it');
  });

  it('names the missing reference when a rule cannot be satisfied', () => {
    const { target, reference } = syntheticCaptures();
    const plan = planMapping(
      target,
      reference.filter((r) => !r.module.endsWith('v_proj')),
      {
        rules: preset,
        targetCallTokens: [
          [0, 4],
          [4, 5],
        ],
      },
    );
    const qkv = plan.unmatched.find((u) => u.module === 'model.layers.0.self_attn.qkv_proj')!;
    assert.match(
      qkv.reason,
      /no reference record for model\.layers\.0\.self_attn\.qkv_proj.*preset llama: no reference model\.layers\.\{N\}\.self_attn\.v_proj/,
    );
  });
});

describe('preset premises and module inputs', () => {
  const meta = (
    module: string,
    output: string,
    seq: number,
    extra: Partial<RecordMeta> = {},
  ): RecordMeta => ({
    name: `${module}#1/${output}`,
    seq,
    module,
    className: 'M',
    call: 1,
    output,
    dtype: 'float32',
    shape: [1, 4],
    ...extra,
  });
  const checked = PRESETS.llama!.map((rule) => ({ rule, origin: 'preset llama', checked: true }));

  it('offers the same-path record as an alternative to a preset rule, and the better fit wins', () => {
    const hf = [
      meta('model.layers.0.mlp.gate_proj', '', 0),
      meta('model.layers.0.mlp.act_fn', '', 1),
      meta('model.layers.0.mlp.up_proj', '', 2),
    ];
    const plan = planMapping(hf, hf, { rules: checked });
    const act = plan.pairs.find((p) => p.key === 'model.layers.0.mlp.act_fn#1')!;
    assert.equal(act.referenceCombine, 'silu-mul');
    assert.deepEqual(act.alternative, { reference: ['model.layers.0.mlp.act_fn#1/'] });
    // Unchecked (user) rules carry no alternative.
    const unchecked = planMapping(hf, hf, { rules: preset });
    assert.equal(unchecked.pairs.find((p) => p.key === act.key)!.alternative, undefined);

    const samePath = checkPremise(act, (p) => (p.origin === 'same path' ? 0.004 : 6.4));
    assert.equal(samePath.pair.origin, 'same path');
    assert.deepEqual(samePath.pair.reference, ['model.layers.0.mlp.act_fn#1/']);
    assert.equal(samePath.pair.referenceCombine, undefined);
    assert.match(samePath.note!, /not applied.*0\.400 %.*640 %/);
    const rule = checkPremise(act, (p) => (p.origin === 'same path' ? 6.4 : 0.004));
    assert.equal(rule.pair.referenceCombine, 'silu-mul');
    assert.equal(rule.pair.alternative, undefined);
    assert.match(rule.note!, /applied: relative error 0\.400 %/);
  });

  it("pairs a module's inputs with its counterpart's, owned by the caller, in execution order", () => {
    const target = [
      meta('model.layers.0.self_attn', '0', 0),
      // The target passes the attention output straight to the norm (a residual add left out).
      meta('model.layers.0.post_attention_layernorm', '', 1, {
        inputs: ['model.layers.0.self_attn#1/0'],
        arguments: { '0': 'model.layers.0.self_attn#1/0' },
      }),
      meta('model.layers.0.mlp.down_proj', 'in.0', 2, { caller: 'model.layers.0.mlp' }),
      meta('model.layers.0.mlp.down_proj', '', 3, {
        inputs: ['model.layers.0.mlp.down_proj#1/in.0'],
      }),
    ];
    const reference = [
      meta('model.layers.0.self_attn', '0', 0),
      meta('model.layers.0.post_attention_layernorm', 'in.0', 1, { caller: 'model.layers.0' }),
      meta('model.layers.0.post_attention_layernorm', '', 2),
      meta('model.layers.0.mlp.down_proj', 'in.0', 3, { caller: 'model.layers.0.mlp' }),
      meta('model.layers.0.mlp.down_proj', '', 4),
    ];
    const plan = planMapping(target, reference, { rules: [] });
    assert.deepEqual(
      plan.pairs.map((p) => [p.key, p.module, p.target[0], p.reference[0], p.inputOf ?? null]),
      [
        [
          'model.layers.0.self_attn#1',
          'model.layers.0.self_attn',
          'model.layers.0.self_attn#1/0',
          'model.layers.0.self_attn#1/0',
          null,
        ],
        [
          'model.layers.0.post_attention_layernorm#1:in.0',
          'model.layers.0',
          'model.layers.0.self_attn#1/0',
          'model.layers.0.post_attention_layernorm#1/in.0',
          'model.layers.0.post_attention_layernorm#1',
        ],
        [
          'model.layers.0.post_attention_layernorm#1',
          'model.layers.0.post_attention_layernorm',
          'model.layers.0.post_attention_layernorm#1/',
          'model.layers.0.post_attention_layernorm#1/',
          null,
        ],
        [
          'model.layers.0.mlp.down_proj#1:in.0',
          'model.layers.0.mlp',
          'model.layers.0.mlp.down_proj#1/in.0',
          'model.layers.0.mlp.down_proj#1/in.0',
          'model.layers.0.mlp.down_proj#1',
        ],
        [
          'model.layers.0.mlp.down_proj#1',
          'model.layers.0.mlp.down_proj',
          'model.layers.0.mlp.down_proj#1/',
          'model.layers.0.mlp.down_proj#1/',
          null,
        ],
      ],
    );
    assert.deepEqual(plan.unmatched, []);
  });
});
