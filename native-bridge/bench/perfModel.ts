import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';

/** Shape of the generated LLaMA-style decoder. */
export interface PerfModelShape {
  hidden: number;
  intermediate: number;
  heads: number;
  layers: number;
  vocab: number;
  sequence: number;
}

export const PERF_MODEL: PerfModelShape = {
  hidden: 1024,
  intermediate: 2816,
  heads: 16,
  layers: 8,
  vocab: 4096,
  sequence: 512,
};

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

/** Deterministic uniform numbers in [-scale, scale) (mulberry32), written straight into the tensor. */
function randomTensor(
  name: string,
  dims: number[],
  seed: number,
  scale: number,
): onnx.ITensorProto {
  const count = dims.reduce((a, b) => a * b, 1);
  const values = new Float32Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    values[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return { name, dims, dataType: FLOAT, rawData: new Uint8Array(values.buffer) };
}

function constant(
  name: string,
  dims: number[],
  values: number[],
  dataType = FLOAT,
): onnx.ITensorProto {
  const array =
    dataType === INT64 ? BigInt64Array.from(values.map(BigInt)) : Float32Array.from(values);
  return { name, dims, dataType, rawData: new Uint8Array(array.buffer) };
}

/**
 * A LLaMA-style decoder as an ONNX graph, built directly: token embedding, per layer RMSNorm,
 * multi-head causal self-attention, residual, RMSNorm, SwiGLU MLP, residual; final RMSNorm and
 * lm_head. Node names carry PyTorch-style scopes (`/model/layers.3/self_attn/q_proj/MatMul`).
 * Rotary embedding is left out (it does not change the cost picture). `bugLayer` gets ReLU where
 * SwiGLU's SiLU belongs: a wrong activation, plain to see even with random weights (whose
 * near-uniform attention would hide an attention bug).
 */
export function buildPerfModel(shape: PerfModelShape, bugLayer?: number): onnx.ModelProto {
  const { hidden, intermediate, heads, layers, vocab, sequence } = shape;
  const headDim = hidden / heads;
  const nodes: onnx.INodeProto[] = [];
  const initializers: onnx.ITensorProto[] = [];
  let seed = 1;
  const weight = (name: string, dims: number[]) => {
    initializers.push(randomTensor(name, dims, seed++, 1 / Math.sqrt(dims[0]!)));
    return name;
  };
  const node = (
    scope: string,
    op: string,
    inputs: string[],
    attributes: onnx.IAttributeProto[] = [],
  ) => {
    const name = `${scope}/${op}_${nodes.length}`;
    const output = `${name}_output_0`;
    nodes.push({ name, opType: op, input: inputs, output: [output], attribute: attributes });
    return output;
  };
  const ints = (name: string, values: number[]) => ({
    name,
    type: onnx.AttributeProto.AttributeType.INTS,
    ints: values,
  });
  initializers.push(
    constant('two', [], [2]),
    constant('one', [], [1]),
    constant('eps', [], [1e-6]),
  );
  initializers.push(constant('heads_shape', [4], [1, sequence, heads, headDim], INT64));
  initializers.push(constant('hidden_shape', [3], [1, sequence, hidden], INT64));
  const mask = new Float32Array(sequence * sequence);
  for (let i = 0; i < sequence; i++)
    for (let j = i + 1; j < sequence; j++) mask[i * sequence + j] = -1e9;
  initializers.push({
    name: 'causal_mask',
    dims: [1, 1, sequence, sequence],
    dataType: FLOAT,
    rawData: new Uint8Array(mask.buffer),
  });

  const rmsNorm = (scope: string, x: string) => {
    const squared = node(scope, 'Pow', [x, 'two']);
    const mean = node(scope, 'ReduceMean', [squared], [ints('axes', [-1])]);
    const root = node(scope, 'Sqrt', [node(scope, 'Add', [mean, 'eps'])]);
    const scaled = node(scope, 'Mul', [x, node(scope, 'Div', ['one', root])]);
    return node(scope, 'Mul', [
      weight(`${scope.slice(1).replace(/\//g, '.')}.weight`, [hidden]),
      scaled,
    ]);
  };
  const linear = (scope: string, x: string, inFeatures: number, outFeatures: number) =>
    node(scope, 'MatMul', [
      x,
      weight(`${scope.slice(1).replace(/\//g, '.')}.weight`, [inFeatures, outFeatures]),
    ]);

  let x = node('/model/embed_tokens', 'Gather', [
    weight('model.embed_tokens.weight', [vocab, hidden]),
    'input_ids',
  ]);
  for (let layer = 0; layer < layers; layer++) {
    const scope = `/model/layers.${layer}`;
    const normed = rmsNorm(`${scope}/input_layernorm`, x);
    const attn = `${scope}/self_attn`;
    const split = (name: string) =>
      node(
        attn,
        'Transpose',
        [node(attn, 'Reshape', [linear(`${attn}/${name}`, normed, hidden, hidden), 'heads_shape'])],
        [ints('perm', [0, 2, 1, 3])],
      );
    const q = split('q_proj');
    const kT = node(attn, 'Transpose', [split('k_proj')], [ints('perm', [0, 1, 3, 2])]);
    const v = split('v_proj');
    const scale = 1 / Math.sqrt(headDim);
    initializers.push(constant(`${attn.slice(1)}.scale`, [], [scale]));
    const scores = node(attn, 'Add', [
      node(attn, 'Mul', [node(attn, 'MatMul', [q, kT]), `${attn.slice(1)}.scale`]),
      'causal_mask',
    ]);
    const probs = node(
      attn,
      'Softmax',
      [scores],
      [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }],
    );
    const context = node(attn, 'Reshape', [
      node(attn, 'Transpose', [node(attn, 'MatMul', [probs, v])], [ints('perm', [0, 2, 1, 3])]),
      'hidden_shape',
    ]);
    x = node(scope, 'Add', [x, linear(`${attn}/o_proj`, context, hidden, hidden)]);
    const mlp = `${scope}/mlp`;
    const normed2 = rmsNorm(`${scope}/post_attention_layernorm`, x);
    const gate = linear(`${mlp}/gate_proj`, normed2, hidden, intermediate);
    const activated =
      layer === bugLayer
        ? node(`${mlp}/act_fn`, 'Relu', [gate])
        : node(`${mlp}/act_fn`, 'Mul', [gate, node(`${mlp}/act_fn`, 'Sigmoid', [gate])]);
    const up = linear(`${mlp}/up_proj`, normed2, hidden, intermediate);
    x = node(scope, 'Add', [
      x,
      linear(`${mlp}/down_proj`, node(mlp, 'Mul', [activated, up]), intermediate, hidden),
    ]);
  }
  linear('/lm_head', rmsNorm('/model/norm', x), hidden, vocab);
  nodes[nodes.length - 1]!.output = ['logits'];
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'ekka-perf-model',
    graph: {
      name: 'perf-llama',
      node: nodes,
      initializer: initializers,
      input: [
        {
          name: 'input_ids',
          type: {
            tensorType: {
              elemType: INT64,
              shape: { dim: [{ dimValue: 1 }, { dimValue: sequence }] },
            },
          },
        },
      ],
      output: [{ name: 'logits' }],
    },
  });
}

/**
 * Writes the model unless it exists (generation is deterministic), the way large models ship: the
 * graph in `file`, every initializer of 4 KiB or more in `file.data` (ONNX external data).
 */
export async function writePerfModel(
  file: string,
  shape: PerfModelShape,
  bugLayer?: number,
): Promise<void> {
  if (await fs.stat(file).catch(() => undefined)) return;
  const model = buildPerfModel(shape, bugLayer);
  const dataFile = `${path.basename(file)}.data`;
  const handle = await fs.open(path.join(path.dirname(file), dataFile), 'w');
  try {
    let offset = 0;
    for (const tensor of model.graph!.initializer ?? []) {
      const raw = tensor.rawData;
      if (!raw || raw.length < 4096) continue;
      await handle.write(raw, 0, raw.length, offset);
      tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      tensor.externalData = [
        { key: 'location', value: dataFile },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(raw.length) },
      ];
      tensor.rawData = new Uint8Array(0);
      offset += raw.length;
    }
  } finally {
    await handle.close();
  }
  await fs.writeFile(`${file}.partial`, onnx.ModelProto.encode(model).finish());
  await fs.rename(`${file}.partial`, file);
}
