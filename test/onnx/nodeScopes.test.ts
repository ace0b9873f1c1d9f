import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { unscopedShare } from '../../native-bridge/onnx/graphStructure';
import { analyzeGraph } from '../../native-bridge/onnx/graphStructure';
import { readOnnxModel } from '../../native-bridge/onnx/modelFile';
import {
  applyExporterScopes,
  NAME_SCOPES_KEY,
  parsePythonStringList,
  readGraphMetadata,
  statementOf,
} from '../../native-bridge/onnx/nodeScopes';

const FIXTURES = path.resolve('test/fixtures/hf-onnx');

const scoped = (name: string, scopes: string[]) => ({
  node: onnx.NodeProto.create({ name, opType: 'Mul' }),
  metadata: new Map([[NAME_SCOPES_KEY, `[${scopes.map((s) => `'${s}'`).join(', ')}]`]]),
});

describe('exporter scopes from node metadata (dynamo exporter)', () => {
  it('parses the Python list literal the exporter writes', () => {
    assert.deepEqual(parsePythonStringList("['', 'model', 'model.layers.0', 'pow_1']"), [
      '',
      'model',
      'model.layers.0',
      'pow_1',
    ]);
    assert.deepEqual(parsePythonStringList(`["it's", 'a\\'b']`), ["it's", "a'b"]);
    assert.equal(parsePythonStringList('not a list'), undefined);
  });

  it('names each node by its enclosing modules, each level by its own attribute name', () => {
    const a = scoped('node_mul_3', ['', 'model', 'model.layers.0', 'model.layers.0.mlp', 'mul_3']);
    const b = scoped('node_add', ['', 'lm_head', 'linear']);
    const graph = onnx.GraphProto.create({ node: [a.node, b.node] });
    const rewrite = applyExporterScopes(graph, [a.metadata, b.metadata]);
    assert.equal(rewrite.renamed, 2);
    assert.equal(rewrite.wrapper, undefined);
    assert.equal(graph.node[0]!.name, '/model/layers.0/mlp/node_mul_3');
    assert.equal(graph.node[1]!.name, '/lm_head/node_add');
  });

  it('leaves out a wrapper module that holds the whole model', () => {
    const a = scoped('node_mul', ['', 'm', 'm.model', 'm.model.norm', 'mul']);
    const b = scoped('node_mm', ['', 'm', 'm.lm_head', 'linear']);
    const graph = onnx.GraphProto.create({ node: [a.node, b.node] });
    assert.equal(applyExporterScopes(graph, [a.metadata, b.metadata]).wrapper, 'm');
    assert.deepEqual(
      graph.node.map((n) => n.name),
      ['/model/norm/node_mul', '/lm_head/node_mm'],
    );
  });

  it('keeps the names of nodes without metadata', () => {
    const names = ['/model/layers.2/self_attn/MatMul', '/lm_head/MatMul'];
    const graph = onnx.GraphProto.create({
      node: names.map((name) => onnx.NodeProto.create({ name, opType: 'MatMul' })),
    });
    assert.equal(applyExporterScopes(graph, [new Map(), new Map()]).renamed, 0);
    assert.deepEqual(
      graph.node.map((n) => n.name),
      names,
    );
  });

  it('leaves out a wrapper module from TorchScript-exporter names, root ops kept', () => {
    const names = [
      '/ConstantOfShape',
      '/model/model/layers.0/mlp/Mul',
      '/model/lm_head/MatMul',
      '/model/Cast',
    ];
    const graph = onnx.GraphProto.create({
      node: names.map((name) => onnx.NodeProto.create({ name, opType: 'Mul' })),
    });
    const rewrite = applyExporterScopes(
      graph,
      names.map(() => new Map()),
    );
    assert.deepEqual(rewrite, { renamed: 3, wrapper: 'model' });
    assert.deepEqual(
      graph.node.map((n) => n.name),
      ['/ConstantOfShape', '/model/layers.0/mlp/Mul', '/lm_head/MatMul', '/Cast'],
    );
  });

  it("reads transformers' Llama exported with dynamo=True into HF module paths", async () => {
    const file = await readOnnxModel(path.join(FIXTURES, 'llama/reference.onnx'));
    assert.equal(file.scopes.wrapper, 'model');
    const modules = new Set(analyzeGraph(file.model.graph!).values.map((v) => v.node.module));
    for (const expected of [
      'model.embed_tokens',
      'model.layers.0.input_layernorm',
      'model.layers.1.self_attn.q_proj',
      'model.layers.2.mlp.act_fn',
      'model.layers.2.mlp.down_proj',
      'model.norm',
      'lm_head',
    ]) {
      assert.ok(modules.has(expected), `${expected} in ${[...modules].join(', ')}`);
    }
    const rootOps = analyzeGraph(file.model.graph!).values.filter((v) => v.node.module === '');
    assert.equal(rootOps.length, 0);
  });

  it("finds each node's statement in its stack trace", async () => {
    const bytes = (await readOnnxModel(path.join(FIXTURES, 'llama/target.onnx'))).bytes;
    // The rewritten bytes drop the metadata; the statement comes from the file as exported.
    const original = await import('node:fs').then((fs) =>
      fs.promises.readFile(path.join(FIXTURES, 'llama/target.onnx')),
    );
    assert.ok(bytes.length < original.length);
    const statements = readGraphMetadata(original).nodes.map(statementOf);
    const gelu = statements.find((s) => s?.file.endsWith('activation.py'));
    assert.ok(gelu && gelu.line > 0, JSON.stringify(statements.slice(0, 3)));
  });
});

describe('unscoped graphs', () => {
  it('warns when most values belong to no module, not when scopes exist', () => {
    const value = (module: string) =>
      ({
        node: { module },
      }) as unknown as import('../../native-bridge/onnx/graphStructure').ProducedValue;
    const flat = Array.from({ length: 30 }, (_, i) => value(i < 25 ? '' : 'model.norm'));
    assert.match(unscopedShare(flat) ?? '', /^25 of 30 values belong to no module/);
    const scopedValues = Array.from({ length: 30 }, (_, i) => value(i < 5 ? '' : 'model.norm'));
    assert.equal(unscopedShare(scopedValues), undefined);
  });
});
