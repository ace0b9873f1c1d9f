import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { resolveConfig } from '../../native-bridge/diagnosis/config';
import { diagnose } from '../../native-bridge/diagnosis/diagnose';
import { EkkaError } from '../../native-bridge/errors';
import { convertToLowPrecision } from '../../native-bridge/onnx/lowPrecision';
import { readOnnxModel } from '../../native-bridge/onnx/modelFile';
import { parseInputs } from '../../native-bridge/runners/inputFile';
import { scratchDir, TINY_INPUTS, writeJson } from '../support/tinyOnnx';

const FLOAT = onnx.TensorProto.DataType.FLOAT;

/** x[1,4] → /a/Add(b) → Relu (unscoped) → /b/Mul(x) → y; `b` stored in weights.bin at offset 8. */
async function externalModel(dir: string): Promise<string> {
  const b = Float32Array.of(0.5, -1, 2, 0.25);
  const blob = new Uint8Array(8 + b.byteLength);
  blob.set(new Uint8Array(b.buffer), 8);
  await fs.writeFile(path.join(dir, 'weights.bin'), blob);
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'external',
      input: [
        {
          name: 'x',
          type: {
            tensorType: { elemType: FLOAT, shape: { dim: [{ dimValue: 1 }, { dimValue: 4 }] } },
          },
        },
      ],
      output: [{ name: 'y' }],
      initializer: [
        {
          name: 'b',
          dims: [4],
          dataType: FLOAT,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: 'location', value: 'weights.bin' },
            { key: 'offset', value: '8' },
            { key: 'length', value: '16' },
          ],
        },
      ],
      node: [
        { name: '/a/Add', opType: 'Add', input: ['x', 'b'], output: ['h'] },
        { name: '', opType: 'Relu', input: ['h'], output: ['r'] },
        { name: '/b/Mul', opType: 'Mul', input: ['r', 'x'], output: ['y'] },
      ],
    },
  });
  const file = path.join(dir, 'model.onnx');
  await fs.writeFile(file, onnx.ModelProto.encode(model).finish());
  return file;
}

async function diagnoseIn(dir: string, target: object, reference: object) {
  await writeJson(path.join(dir, 'in.json'), TINY_INPUTS);
  return diagnose(await resolveConfig({ target, reference, input: 'in.json' }, dir));
}

describe('models with external data, float inputs and unnamed nodes', () => {
  it('runs a model whose weights live in an external file, at float32 and float16', async () => {
    const dir = await scratchDir();
    await externalModel(dir);
    const result = await diagnoseIn(
      dir,
      { model: 'model.onnx', precision: 'float16' },
      { model: 'model.onnx' },
    );
    // x = [1, -2, 3, -4], b = [0.5, -1, 2, 0.25]: y = relu(x + b) * x = [1.5, 0, 15, 0]
    assert.deepEqual(result.unmatched, []);
    assert.deepEqual(
      result.series.map((p) => p.key),
      ['a@out0', '@out0', 'b@out0'],
    );
    assert.equal(result.changePoint, null);
    assert.ok(
      result.series.every((p) => p.ratio < 1),
      JSON.stringify(result.series.map((p) => p.ratio)),
    );
  });

  it('keeps the float32 graph’s keys when float16 casts a float input', async () => {
    const dir = await scratchDir();
    await externalModel(dir);
    const low = await diagnoseIn(
      dir,
      { model: 'model.onnx', precision: 'float16' },
      { model: 'model.onnx' },
    );
    const full = await diagnoseIn(dir, { model: 'model.onnx' }, { model: 'model.onnx' });
    assert.deepEqual(
      low.series.map((p) => p.key),
      full.series.map((p) => p.key),
    );
    assert.equal(low.series[0]!.dtype, 'float16');
  });

  it('names the Casts around unnamed ops kept in float32 uniquely', async () => {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ version: 17 }],
      graph: {
        input: [
          {
            name: 'x',
            type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimValue: 4 }] } } },
          },
        ],
        output: [{ name: 'z' }],
        node: [
          { name: '', opType: 'Sin', input: ['x'], output: ['y'] },
          { name: '', opType: 'Sin', input: ['y'], output: ['z'] },
        ],
      },
    });
    const types = new Map([
      ['x', 'float32'],
      ['y', 'float32'],
      ['z', 'float32'],
    ]);
    const converted = convertToLowPrecision(model, 'float16', types, new Set(['Sin']));
    const names = converted.graph!.node!.map((n) => n.name).filter(Boolean); // the model's own unnamed nodes stay unnamed
    assert.equal(new Set(names).size, names.length, names.join(', '));
    const session = await ort.InferenceSession.create(onnx.ModelProto.encode(converted).finish());
    const out = await session.run({
      x: new ort.Tensor('float32', Float32Array.of(0, 1, 2, 3), [4]),
    });
    await session.release();
    const z = out.z!.data as Float32Array;
    assert.ok(Math.abs(z[1]! - Math.sin(Math.sin(1))) < 1e-3, String(z[1]));
  });

  it('saturates bfloat16 constants instead of rounding them to infinity', () => {
    const model = onnx.ModelProto.create({
      graph: {
        initializer: [
          { name: 'm', dims: [1], dataType: FLOAT, floatData: [-3.4028234663852886e38] },
        ],
        node: [],
      },
    });
    convertToLowPrecision(model, 'bfloat16', new Map(), new Set());
    const raw = model.graph!.initializer![0]!.rawData!;
    assert.equal(raw[0]! | (raw[1]! << 8), 0xff7f); // -3.39e38, not -Inf (0xff80)
  });

  it('refuses external data reached through a link out of the model’s folder', async () => {
    const dir = await scratchDir();
    const outside = await scratchDir();
    await externalModel(dir);
    await fs.rename(path.join(dir, 'weights.bin'), path.join(outside, 'weights.bin'));
    await fs.symlink(path.join(outside, 'weights.bin'), path.join(dir, 'weights.bin'));
    await assert.rejects(
      readOnnxModel(path.join(dir, 'model.onnx')),
      /"weights.bin" lies outside the model's folder/,
    );
  });
});

describe('input and output checks', () => {
  it('rejects integers outside their type instead of wrapping them', () => {
    assert.throws(
      () => parseInputs({ ids: { dtype: 'int32', shape: [2], data: [1, 3e9] } }, 'in.json'),
      (error: unknown) =>
        error instanceof EkkaError &&
        /input "ids": element 1 \(3000000000\) is not an int32/.test(error.message),
    );
  });

  it('reports a JSON result that cannot be written, without a stack trace', async () => {
    const dir = await scratchDir();
    const run = spawnSync(
      process.execPath,
      [
        path.resolve('bin/ekka.js'),
        'diagnose',
        path.resolve('samples/tiny-llama/cases/final-norm-eps/ekka.json'),
        '--json',
        dir,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(run.status, 2);
    assert.match(run.stderr, /^ekka: .*: cannot write the JSON result: EISDIR/);
    assert.doesNotMatch(run.stderr, /^\s+at /m);
  });
});
