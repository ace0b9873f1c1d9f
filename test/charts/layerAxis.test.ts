import * as assert from 'node:assert/strict';
import { layerOf, layerTicks, moduleKind } from '../../webview/charts/layerAxis';

describe('the chart by layer', () => {
  it('reads the layer and the module kind from the naming conventions of common models', () => {
    const cases: [string, number | undefined, string][] = [
      ['model.layers.12.self_attn.q_proj', 12, 'attention'],
      ['model.layers.3.mlp.gate_up_proj', 3, 'mlp'],
      ['model.layers.3.mlp.experts.act_fn', 3, 'mlp'],
      ['model.layers.0.post_attention_layernorm', 0, 'norm'],
      ['model.layers.2', 2, 'layer'],
      ['transformer.h.5.attn.c_attn', 5, 'attention'],
      ['transformer.h.5.mlp.c_fc', 5, 'mlp'],
      ['transformer.ln_f', undefined, 'norm'],
      ['transformer.wte', undefined, 'embedding'],
      ['gpt_neox.layers.1.attention.rotary_emb', 1, 'attention'],
      ['model.embed_tokens', undefined, 'embedding'],
      ['lm_head', undefined, 'head'],
      ['', undefined, 'other'],
      ['model.layers10x', undefined, 'other'],
    ];
    for (const [module, layer, kind] of cases) {
      assert.equal(layerOf(module), layer, module);
      assert.equal(moduleKind(module), kind, module);
    }
  });

  it('ticks the first point of each layer, once, and the points around them', () => {
    const modules = [
      'model.embed_tokens',
      'model.rotary_emb',
      'model.layers.0.input_layernorm',
      'model.layers.0',
      'model.layers.1.self_attn',
      // A layer called again (a second step) gets no second tick.
      'model.layers.0.mlp',
      'model.layers.1',
      'model.norm',
      'lm_head',
    ];
    const ticks = layerTicks(modules.map((module, k) => ({ index: 10 + k, module })));
    assert.deepEqual(ticks.tickvals, [10, 12, 14, 17]);
    assert.deepEqual(ticks.ticktext, ['in', 'L0', 'L1', 'out']);
    // No layer in any path: no ticks (the axis stays execution order).
    assert.deepEqual(layerTicks([{ index: 0, module: 'encoder' }]).tickvals, []);
    // A partial series ending inside the layers has no `out` yet.
    assert.deepEqual(layerTicks([{ index: 0, module: 'model.layers.0.mlp' }]).ticktext, ['L0']);
  });
});
