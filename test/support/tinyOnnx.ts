import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';

export interface TinyNode {
  name: string;
  op: string;
  inputs: string[];
  output: string;
}

/**
 * A small float32 ONNX model: one input `x` of `inputShape`, the given initializers and nodes,
 * and the last node's output as the graph output.
 */
export function tinyModel(
  inputShape: number[],
  initializers: Record<string, { dims: number[]; values: number[] }>,
  nodes: TinyNode[],
): Uint8Array {
  const tensorType = (dims: number[]) =>
    onnx.TypeProto.create({
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d) => ({ dimValue: d })) },
      },
    });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'ekka-tests',
    graph: {
      name: 'tiny',
      input: [{ name: 'x', type: tensorType(inputShape) }],
      output: [{ name: nodes[nodes.length - 1]!.output }],
      initializer: Object.entries(initializers).map(([name, t]) => ({
        name,
        dims: t.dims,
        dataType: onnx.TensorProto.DataType.FLOAT,
        floatData: t.values,
      })),
      node: nodes.map((n) => ({ name: n.name, opType: n.op, input: n.inputs, output: [n.output] })),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

export async function scratchDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'ekka-test-'));
}

export async function writeJson(file: string, value: unknown): Promise<string> {
  await fs.writeFile(file, JSON.stringify(value));
  return file;
}

/** An inputs file for the tiny models: x = [1, -2, 3, -4]. */
export const TINY_INPUTS = { x: { dtype: 'float32', shape: [1, 4], data: [1, -2, 3, -4] } };

export const identity4 = { dims: [4, 4], values: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1] };
