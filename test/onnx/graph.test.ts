import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { EkkaError } from '../../native-bridge/errors';
import {
  analyzeGraph,
  moduleCalls,
  modulePathFromNodeName,
} from '../../native-bridge/onnx/graphStructure';
import { exposeIntermediates, readOnnxModel } from '../../native-bridge/onnx/modelFile';
import { scratchDir } from '../support/tinyOnnx';

const REFERENCE = path.resolve('samples/tiny-llama/reference.onnx');

describe('modulePathFromNodeName', () => {
  const cases: [string, string][] = [
    ['/model/layers.2/self_attn/q_proj/MatMul', 'model.layers.2.self_attn.q_proj'],
    ['/model/embed_tokens/Gather', 'model.embed_tokens'],
    ['/lm_head/MatMul', 'lm_head'],
    ['/Add', ''],
    ['Constant_53', ''],
    ['node_MatMul_0', ''],
  ];
  for (const [name, expected] of cases) {
    it(`${name} → "${expected}"`, () => assert.equal(modulePathFromNodeName(name), expected));
  }
});

describe('moduleCalls', () => {
  it('folds a repeated call onto its module and numbers the call', () => {
    const calls = moduleCalls([
      '/model/layers.2/self_attn/q_proj/MatMul',
      '/model/layers.2/self_attn_1/q_proj/MatMul',
      '/model/layers.0_1/Add',
      '/model/layers.0/Add',
      '/model/block/linear_1/MatMul',
    ]);
    assert.deepEqual(calls.get('/model/layers.2/self_attn_1/q_proj'), {
      module: 'model.layers.2.self_attn.q_proj',
      call: 2,
    });
    assert.deepEqual(calls.get('/model/layers.0_1'), { module: 'model.layers.0', call: 2 });
    assert.deepEqual(calls.get('/model/layers.2/self_attn'), {
      module: 'model.layers.2.self_attn',
      call: 1,
    });
    // No sibling `linear`: `linear_1` is the attribute's own name.
    assert.deepEqual(calls.get('/model/block/linear_1'), {
      module: 'model.block.linear_1',
      call: 1,
    });
  });
});

describe('analyzeGraph', () => {
  const graph = onnx.GraphProto.create({
    input: [{ name: 'x' }],
    output: [{ name: 'y' }],
    node: [
      { name: '/a/MatMul', opType: 'MatMul', input: ['x', 'w'], output: ['a0'] },
      { name: '/a/Relu', opType: 'Relu', input: ['a0'], output: ['a1'] },
      { name: '/b/Constant', opType: 'Constant', output: ['c'] },
      { name: '/b/Add', opType: 'Add', input: ['a1', 'c'], output: ['b0'] },
      { name: '/b/Add_1', opType: 'Add', input: ['b0', 'a0'], output: ['y'] },
    ],
  });
  const structure = analyzeGraph(graph);

  it('marks values that leave their module as boundaries', () => {
    const boundary = Object.fromEntries(structure.values.map((v) => [v.name, v.boundary]));
    assert.deepEqual(boundary, { a0: true, a1: true, b0: false, y: true });
  });

  it('keys ops by module, type and ordinal, skipping Constant nodes', () => {
    assert.deepEqual(
      structure.values.map((v) => v.key),
      ['a|MatMul#0', 'a|Relu#0', 'b|Add#0', 'b|Add#1'],
    );
  });

  it('lists each unit’s inputs from other units', () => {
    assert.deepEqual(structure.moduleInputs.get('/b'), ['a1', 'a0']);
    assert.equal(structure.moduleInputs.get('/a'), undefined);
  });
});

it('tells a module input handed on through casts and layout ops from computed outputs', () => {
  // A traced RMSNorm: its Cast of the input is what the residual reads; a weight's Cast and a
  // Cast of a computed value are not inputs handed on.
  const norm = analyzeGraph(
    onnx.GraphProto.create({
      input: [{ name: 'h' }],
      output: [{ name: 'y' }],
      node: [
        { name: '/prev/Relu', opType: 'Relu', input: ['h'], output: ['x'] },
        { name: '/norm/Cast', opType: 'Cast', input: ['x'], output: ['x32'] },
        { name: '/norm/Unsqueeze', opType: 'Unsqueeze', input: ['x32', 'axes'], output: ['xu'] },
        { name: '/norm/Cast_1', opType: 'Cast', input: ['w'], output: ['w32'] },
        { name: '/norm/Mul', opType: 'Mul', input: ['x32', 'w32'], output: ['n'] },
        { name: '/norm/Cast_2', opType: 'Cast', input: ['n'], output: ['n16'] },
        { name: '/Cast', opType: 'Cast', input: ['h'], output: ['h16'] },
        { name: '/next/Add', opType: 'Add', input: ['n16', 'xu'], output: ['s'] },
        { name: '/next/Add_1', opType: 'Add', input: ['s', 'h16'], output: ['y'] },
      ],
    }),
  );
  const passed = Object.fromEntries(norm.values.map((v) => [v.name, v.passThrough]));
  assert.deepEqual(passed, {
    x: false,
    x32: true,
    xu: true,
    w32: false,
    n: false,
    n16: false,
    h16: true,
    s: false,
    y: false,
  });
});

describe('readOnnxModel and exposeIntermediates', () => {
  it('exposes every non-Constant node output of the sample as a graph output', async () => {
    const file = await readOnnxModel(REFERENCE);
    const graph = file.model.graph!;
    const expected = new Set(
      graph.node!.filter((n) => n.opType !== 'Constant').flatMap((n) => n.output ?? []),
    );
    const bytes = exposeIntermediates(file.model);
    const rewritten = onnx.ModelProto.decode(bytes);
    const outputs = new Set((rewritten.graph?.output ?? []).map((o) => o.name));
    assert.ok(outputs.has('logits'));
    for (const name of expected) assert.ok(outputs.has(name), `${name} not exposed`);
    assert.equal(outputs.size, expected.size); // logits is itself a node output
    assert.equal(rewritten.graph?.node?.length, graph.node!.length);
  });

  describe('rejects bad files with a message naming the file', () => {
    let dir: string;
    before(async () => {
      dir = await scratchDir();
    });
    const expectModelError = async (file: string, pattern: RegExp) => {
      await assert.rejects(readOnnxModel(file), (error: unknown) => {
        assert.ok(error instanceof EkkaError, `not an EkkaError: ${String(error)}`);
        assert.equal(error.kind, 'model');
        assert.ok(error.message.startsWith(file), error.message);
        assert.match(error.message, pattern);
        return true;
      });
    };

    it('missing', () => expectModelError(path.join(dir, 'nope.onnx'), /file not found/));

    it('empty', async () => {
      const file = path.join(dir, 'empty.onnx');
      await fs.writeFile(file, '');
      await expectModelError(file, /empty file/);
    });

    for (const fraction of [0.001, 0.5, 0.9]) {
      it(`truncated at ${fraction * 100}%`, async () => {
        const bytes = await fs.readFile(REFERENCE);
        const file = path.join(dir, `truncated-${fraction}.onnx`);
        await fs.writeFile(file, bytes.subarray(0, Math.floor(bytes.length * fraction)));
        await expectModelError(file, /not a valid ONNX model/);
      });
    }

    it('a text file', async () => {
      const file = path.join(dir, 'notes.onnx');
      await fs.writeFile(file, 'these are not the weights you are looking for\n'.repeat(20));
      await expectModelError(file, /not a valid ONNX model/);
    });

    it('external data that is missing', async () => {
      const model = onnx.ModelProto.create({
        irVersion: 8,
        opsetImport: [{ version: 17 }],
        graph: {
          node: [{ name: '/a/Add', opType: 'Add', input: ['x', 'w'], output: ['y'] }],
          initializer: [
            {
              name: 'w',
              dims: [1],
              dataType: 1,
              dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
              externalData: [{ key: 'location', value: 'weights.bin' }],
            },
          ],
        },
      });
      const file = path.join(dir, 'external.onnx');
      await fs.writeFile(file, onnx.ModelProto.encode(model).finish());
      await expectModelError(file, /external data file "weights.bin" is missing/);
    });
  });
});
