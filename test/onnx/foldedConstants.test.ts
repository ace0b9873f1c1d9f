import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { analyzeGraph } from '../../native-bridge/onnx/graphStructure';
import {
  exposeFoldedConstants,
  FOLDED_FROM_KEY,
  ownerOfFolded,
} from '../../native-bridge/onnx/foldedConstants';
import { readOnnxModel } from '../../native-bridge/onnx/modelFile';

const node = (name: string, opType: string, input: string[], output: string[]) =>
  onnx.NodeProto.create({ name, opType, input, output });

const folded = (sources: string[]) =>
  new Map([[FOLDED_FROM_KEY, `[${sources.map((s) => `'${s}'`).join(', ')}]`]]);

describe('constants folded at export time (dynamo exporter)', () => {
  it('belong to the deepest module holding the parameters they were folded from', () => {
    const rotary = ['cos', 'matmul', 'm.model.rotary_emb.inv_freq', 'val_3', 'unsqueeze_13'];
    assert.equal(ownerOfFolded(rotary, 'm'), 'model.rotary_emb');
    assert.equal(ownerOfFolded(rotary), 'm.model.rotary_emb');
    assert.equal(
      ownerOfFolded(['model.layers.0.mlp.up.weight', 'model.layers.0.norm.weight']),
      'model.layers.0',
    );
    // Folded from positions and shapes only: no module made it.
    assert.equal(ownerOfFolded(['arange', 'val_4', 'expand_1']), undefined);
  });

  it('get an Identity node in their module, before the first reader, which reads it', () => {
    const graph = onnx.GraphProto.create({
      initializer: [
        onnx.TensorProto.create({ name: 'unsqueeze_16', dataType: 1, dims: [2] }),
        onnx.TensorProto.create({ name: 'val_7', dataType: 1, dims: [2] }),
      ],
      node: [
        node('/model/embed/g', 'Gather', ['w', 'ids'], ['e']),
        node('/model/layers.0/self_attn/m', 'Mul', ['e', 'unsqueeze_16'], ['q']),
        node('/model/layers.1/self_attn/m', 'Mul', ['q', 'unsqueeze_16'], ['k']),
        node('/model/layers.1/self_attn/a', 'Add', ['k', 'val_7'], ['y']),
      ],
    });
    const values = new Map([
      ['unsqueeze_16', folded(['cos', 'm.model.rotary_emb.inv_freq'])],
      ['val_7', folded(['arange', 'expand'])],
    ]);
    assert.equal(exposeFoldedConstants(graph, values, 'm'), 1);
    assert.deepEqual(
      graph.node.map((n) => n.name),
      [
        '/model/embed/g',
        '/model/rotary_emb/folded_unsqueeze_16',
        '/model/layers.0/self_attn/m',
        '/model/layers.1/self_attn/m',
        '/model/layers.1/self_attn/a',
      ],
    );
    assert.deepEqual(graph.node[2]!.input, ['e', 'unsqueeze_16.folded']);
    assert.deepEqual(graph.node[3]!.input, ['q', 'unsqueeze_16.folded']);
    assert.deepEqual(graph.node[4]!.input, ['k', 'val_7']);
    const value = analyzeGraph(graph).values.find((v) => v.name === 'unsqueeze_16.folded')!;
    assert.equal(value.node.module, 'model.rotary_emb');
    assert.ok(value.boundary && !value.passThrough);
  });

  it("hand transformers' rotary tables back to model.rotary_emb", async () => {
    const file = await readOnnxModel(path.resolve('test/fixtures/hf-onnx/llama/reference.onnx'));
    const modules = analyzeGraph(file.model.graph!).values.map((v) => v.node.module);
    assert.equal(modules.filter((m) => m === 'model.rotary_emb').length, 2);
    assert.ok(file.scopes.folded! >= 2);
  });
});
