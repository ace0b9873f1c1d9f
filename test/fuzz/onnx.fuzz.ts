/**
 * Fuzz properties of the ONNX rewrite: readOnnxModel then exposeIntermediates on byte-mutated
 * copies of the sample model and of a tiny model (bfloat16 cast, external data). Only EkkaErrors
 * naming the file; a model that is read is rewritten into one that decodes again.
 */
import * as assert from 'node:assert/strict';
import * as fc from 'fast-check';
import { promises as fs, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { EkkaError } from '../../native-bridge/errors';
import {
  exposeIntermediates,
  inlineExternalData,
  loadExternalData,
  readOnnxModel,
} from '../../native-bridge/onnx/modelFile';
import { identity4, tinyModel } from '../support/tinyOnnx';
import { applyByteMutations, byteMutations, typedOutcomeAsync, type ByteMutation } from './fuzzing';

/** A model to mutate, the byte ranges where its structure lives, and files it needs beside it. */
export interface OnnxSeed {
  name: string;
  bytes: Uint8Array;
  hotspots: [number, number][];
  companions: Record<string, Uint8Array>;
}

/**
 * Where a model's graph structure lies: the nodes, and everything after the last initializer's
 * raw data (inputs, outputs, opset). Found by walking the top-level and graph fields.
 */
function structureRanges(bytes: Uint8Array): [number, number][] {
  const graphField = fieldRanges(bytes).find((range) => range.field === 7);
  if (!graphField) return [[0, bytes.length]];
  const inner = fieldRanges(bytes.subarray(graphField.body, graphField.end)).map((range) => ({
    ...range,
    start: range.start + graphField.body,
    end: range.end + graphField.body,
  }));
  const nodes = inner.filter((range) => range.field === 1);
  const initializers = inner.filter((range) => range.field === 5);
  const ranges: [number, number][] = [[0, graphField.body + 16]];
  if (nodes.length) ranges.push([nodes[0]!.start, nodes[nodes.length - 1]!.end]);
  // Each initializer's dims, type and name come before its raw data.
  for (const init of initializers.slice(0, 8)) ranges.push([init.start, init.start + 48]);
  const lastInit = initializers[initializers.length - 1];
  ranges.push([lastInit ? lastInit.end : graphField.body, bytes.length]);
  return ranges;
}

/** Top-level protobuf fields of a message: field number, start, start of the body, end. */
function fieldRanges(
  bytes: Uint8Array,
): { field: number; start: number; body: number; end: number }[] {
  const ranges: { field: number; start: number; body: number; end: number }[] = [];
  let at = 0;
  const varint = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  while (at < bytes.length) {
    const start = at;
    const tag = varint();
    const wireType = tag & 7;
    let body = at;
    if (wireType === 0) varint();
    else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else if (wireType === 2) {
      const length = varint();
      body = at;
      at += length;
    } else break;
    ranges.push({ field: Math.floor(tag / 8), start, body, end: at });
  }
  return ranges;
}

/** samples/tiny-llama/reference.onnx (1 MB, 917 nodes). */
export function sampleModelSeed(): OnnxSeed {
  const bytes = new Uint8Array(readFileSync('samples/tiny-llama/reference.onnx'));
  return { name: 'reference.onnx', bytes, hotspots: structureRanges(bytes), companions: {} };
}

/** A tiny model with a bfloat16 Cast (read back through an added Cast) and external weights. */
function externalWeightsModel(externalData: { key: string; value: string }[]): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'tiny-bf16',
      input: [
        {
          name: 'x',
          type: {
            tensorType: {
              elemType: onnx.TensorProto.DataType.FLOAT,
              shape: { dim: [{ dimValue: 1 }, { dimValue: 4 }] },
            },
          },
        },
      ],
      output: [{ name: 'y' }],
      initializer: [
        {
          name: 'w',
          dims: [4, 4],
          dataType: onnx.TensorProto.DataType.FLOAT,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData,
        },
      ],
      node: [
        { name: '/a/MatMul', opType: 'MatMul', input: ['x', 'w'], output: ['h'] },
        {
          name: '/a/Cast',
          opType: 'Cast',
          input: ['h'],
          output: ['h16'],
          attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: 16 }],
        },
        { name: '/a/Relu', opType: 'Relu', input: ['h16'], output: ['r16'] },
        { name: '/a/TopK', opType: 'TopK', input: ['r16', 'k'], output: ['top', 'indices'] },
        {
          name: '/b/Cast',
          opType: 'Cast',
          input: ['r16'],
          output: ['y'],
          attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
        },
      ],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

const WEIGHTS = new Uint8Array(new Float32Array(identity4.values).buffer);

/** The tiny test model, and the one with a bfloat16 Cast and external weights. */
export function tinyModelSeeds(): OnnxSeed[] {
  const plain = tinyModel([1, 4], { w: identity4 }, [
    { name: '/layer/MatMul', op: 'MatMul', inputs: ['x', 'w'], output: 'h' },
    { name: '/layer/Relu', op: 'Relu', inputs: ['h'], output: 'y' },
  ]);
  const bf16 = externalWeightsModel([
    { key: 'location', value: 'weights.bin' },
    { key: 'offset', value: '0' },
    { key: 'length', value: String(WEIGHTS.length) },
  ]);
  return [
    { name: 'tiny.onnx', bytes: plain, hotspots: [[0, plain.length]], companions: {} },
    {
      name: 'tiny-bf16.onnx',
      bytes: bf16,
      hotspots: [[0, bf16.length]],
      companions: { 'weights.bin': WEIGHTS },
    },
  ];
}

export function scratchFolder(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'ekka-fuzz-onnx-'));
}

/** Reads the mutated model and rewrites it; checks the rewrite decodes and declares every output. */
async function readAndRewrite(file: string): Promise<void> {
  const outcome = await typedOutcomeAsync(async () => {
    const read = await readOnnxModel(file);
    const before = read.model.graph!.node!.length;
    const rewritten = exposeIntermediates(read.model);
    return { before, rewritten };
  });
  if (!outcome.ok) {
    assert.equal((outcome.error as EkkaError).file, file, outcome.error.message);
    return;
  }
  const again = onnx.ModelProto.decode(outcome.value.rewritten);
  assert.ok((again.graph?.node?.length ?? 0) >= outcome.value.before, 'nodes were lost');
}

/** Byte mutations of `seeds` (structure ranges as often as the whole), read and rewritten. */
export function onnxRewriteProperty(seeds: readonly OnnxSeed[], scratch: string) {
  let counter = 0;
  const cases = fc.oneof(
    ...seeds.map((seed) =>
      fc.tuple(fc.constant(seed), byteMutations(seed.bytes.length, seed.hotspots)),
    ),
  );
  return fc.asyncProperty(cases, async ([seed, mutations]: [OnnxSeed, ByteMutation[]]) => {
    const dir = path.join(scratch, `case-${counter++}`);
    await fs.mkdir(dir);
    try {
      for (const [name, bytes] of Object.entries(seed.companions)) {
        await fs.writeFile(path.join(dir, name), bytes);
      }
      const file = path.join(dir, seed.name);
      await fs.writeFile(file, applyByteMutations(seed.bytes, mutations));
      await readAndRewrite(file);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
}

/** What an external data entry may say: locations inside, outside, odd; offsets and lengths. */
const externalEntries = fc.array(
  fc.record({
    key: fc.constantFrom('location', 'offset', 'length', 'checksum', ''),
    value: fc.oneof(
      fc.constantFrom(
        'weights.bin',
        'sub/weights.bin',
        'sub',
        '.',
        '..',
        '',
        '../outside.bin',
        '/etc/hostname',
        'link.bin',
        'weights.bin\0',
        '0',
        '-1',
        '8',
        '64',
        '65',
        '1e3',
        'NaN',
        '0x10',
        '9007199254740993',
      ),
      fc.nat(80).map(String),
      fc.string({ maxLength: 6 }),
    ),
  }),
  { maxLength: 4 },
);

/**
 * External data entries from the edges (locations outside the folder, folders, symbolic links,
 * bad offsets and lengths): reading, loading and inlining the data, then the rewrite, throw only
 * EkkaErrors naming the model file.
 */
export function externalDataProperty(scratch: string) {
  let counter = 0;
  return fc.asyncProperty(externalEntries, async (entries) => {
    const dir = path.join(scratch, `external-${counter++}`, 'model');
    await fs.mkdir(path.join(dir, 'sub'), { recursive: true });
    try {
      await fs.writeFile(path.join(dir, 'weights.bin'), WEIGHTS);
      await fs.writeFile(path.join(dir, 'sub', 'weights.bin'), WEIGHTS);
      await fs.writeFile(path.join(dir, '..', 'outside.bin'), WEIGHTS);
      await fs.symlink(path.join(dir, '..', 'outside.bin'), path.join(dir, 'link.bin'));
      const file = path.join(dir, 'model.onnx');
      await fs.writeFile(file, externalWeightsModel(entries));
      const outcome = await typedOutcomeAsync(async () => {
        const read = await readOnnxModel(file);
        inlineExternalData(read.model, await loadExternalData(read), file);
        return exposeIntermediates(read.model);
      });
      if (!outcome.ok) assert.equal((outcome.error as EkkaError).file, file, outcome.error.message);
    } finally {
      await fs.rm(path.dirname(dir), { recursive: true, force: true });
    }
  });
}
