import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { EkkaError } from '../../native-bridge/errors';
import type { ActivationRecord } from '../../native-bridge/runners/activationRecord';
import { parseInputs } from '../../native-bridge/runners/inputFile';
import { OnnxCapture } from '../../native-bridge/runners/onnxRunner';
import { scratchDir } from '../support/tinyOnnx';

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const input = parseInputs({ x: { dtype: 'float32', shape: [2], data: [1, -2] } }, 'in.json');

/** Two layers: /layers.0/Mul(x, w0), then `second` for layer 1; w0 stored in float_data. */
async function twoLayers(
  second: onnx.INodeProto[],
  extra: onnx.ITensorProto[] = [],
): Promise<string> {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'two',
      input: [
        { name: 'x', type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimValue: 2 }] } } } },
      ],
      output: [{ name: 'y' }],
      initializer: [{ name: 'w0', dims: [2], dataType: FLOAT, floatData: [3, 4] }, ...extra],
      node: [
        { name: '/layers.0/Mul', opType: 'Mul', input: ['x', 'w0'], output: ['h'] },
        ...second,
      ],
    },
  });
  const file = path.join(await scratchDir(), 'two.onnx');
  await fs.writeFile(file, onnx.ModelProto.encode(model).finish());
  return file;
}

async function capture(file: string): Promise<{ records: ActivationRecord[]; segments: number }> {
  const run = await OnnxCapture.open({
    model: file,
    optimization: 'disabled',
    executionProvider: 'cpu',
  });
  const records: ActivationRecord[] = [];
  try {
    for await (const record of run.run(input)) records.push(record);
  } finally {
    await run.release();
  }
  return { records, segments: run.info.segments };
}

describe('partitioned capture on unusual graphs', () => {
  it('runs weights stored in typed fields (float_data)', async () => {
    const file = await twoLayers([
      { name: '/layers.1/Add', opType: 'Add', input: ['h', 'w0'], output: ['y'] },
    ]);
    const { records, segments } = await capture(file);
    assert.equal(segments, 2);
    const y = records.find((r) => r.name === 'y')!;
    assert.deepEqual([...(y.data as Float32Array)], [1 * 3 + 3, -2 * 4 + 4]);
  });

  it('carries what an If branch reads from the outer graph', async () => {
    const branch = (value: number) =>
      onnx.GraphProto.create({
        name: `branch${value}`,
        output: [{ name: `b${value}` }],
        node: [
          { name: `/layers.1/b${value}`, opType: 'Mul', input: ['h', 'w1'], output: [`b${value}`] },
        ],
      });
    const file = await twoLayers(
      [
        {
          name: '/layers.1/Cond',
          opType: 'ReduceSum',
          input: ['h'],
          output: ['s'],
          attribute: [{ name: 'keepdims', type: 2, i: 0 }],
        },
        { name: '/layers.1/Pos', opType: 'Greater', input: ['s', 'zero'], output: ['c'] },
        {
          name: '/layers.1/If',
          opType: 'If',
          input: ['c'],
          output: ['y'],
          attribute: [
            { name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch(1) },
            { name: 'else_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch(2) },
          ],
        },
      ],
      [
        { name: 'w1', dims: [2], dataType: FLOAT, floatData: [10, 10] },
        { name: 'zero', dims: [], dataType: FLOAT, floatData: [0] },
      ],
    );
    const { records, segments } = await capture(file);
    assert.equal(segments, 2);
    // h = [3, -8], sum -5: the else branch, h · w1.
    assert.deepEqual([...(records.find((r) => r.name === 'y')!.data as Float32Array)], [30, -80]);
  });

  it('names the segment onnxruntime cannot load, without a stack trace', async () => {
    const file = await twoLayers([
      { name: '/layers.1/Frob', opType: 'FrobnicateNotAnOp', input: ['h'], output: ['y'] },
    ]);
    await assert.rejects(capture(file), (error: unknown) => {
      assert.ok(error instanceof EkkaError, String(error));
      assert.match(error.message, /cannot load segment 2 \(\/layers\.1\)/);
      return true;
    });
  });
});
