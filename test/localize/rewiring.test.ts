import * as assert from 'node:assert/strict';
import { findRewiring, lowestCommonModule } from '../../native-bridge/localize/rewiring';

const same = (a: number, b: number) => Math.abs(a - b) < 1e-6;

describe('lowestCommonModule', () => {
  it('keeps the shared dotted prefix', () => {
    assert.equal(
      lowestCommonModule(['model.layers.3.mlp.act_fn', 'model.layers.3.mlp.up_proj']),
      'model.layers.3.mlp',
    );
    assert.equal(lowestCommonModule(['model.layers.1', 'model.layers.10']), 'model.layers'); // segments, not characters
    assert.equal(lowestCommonModule(['lm_head', 'model.norm']), '');
  });
});

describe('findRewiring', () => {
  it('finds a consumer fed a different value and names the module holding the wiring', () => {
    // The activation reads up_proj where the reference reads gate_proj.
    const rewired = findRewiring(
      'model.layers.3.mlp.act_fn',
      [{ key: 'model.layers.3.mlp.up_proj@out0', value: 2 }],
      [{ key: 'model.layers.3.mlp.gate_proj@out0', value: 5 }],
      same,
    );
    assert.deepEqual(rewired, {
      module: 'model.layers.3.mlp',
      target: ['model.layers.3.mlp.up_proj@out0'],
      reference: ['model.layers.3.mlp.gate_proj@out0'],
    });
  });

  it('accepts the same value reached through another producer', () => {
    // A shared cos table read from another module after common-subexpression elimination.
    const rewired = findRewiring(
      'model.layers.1.self_attn',
      [
        { key: 'model@out1', value: 0.5 },
        { key: 'model.layers.1.self_attn.q_proj@out0', value: 1 },
      ],
      [
        { key: 'model.layers.0.self_attn@out0', value: 0.5 },
        { key: 'model.layers.1.self_attn.q_proj@out0', value: 1 },
      ],
      same,
    );
    assert.equal(rewired, undefined);
  });

  it('says nothing when both runs read the same keys', () => {
    assert.equal(
      findRewiring('a.b', [{ key: 'a.c@out0', value: 1 }], [{ key: 'a.c@out0', value: 9 }], same),
      undefined,
    );
  });
});
