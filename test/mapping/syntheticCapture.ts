import type { CapturedRecord } from '../../native-bridge/runners/capturedRecord';
import { seededRandom } from '../support/numbers';

/**
 * A tiny two-layer "model" captured twice: as HuggingFace names it (split projections, batched
 * tokens, the layer returning hidden + residual, one call over all tokens) and as a serving engine
 * does (fused qkv/gate_up, flattened tokens, (hidden, residual) tuples, a prefill call then a decode
 * call). Values are random but consistent between the two, so a correct pairing compares equal.
 */
export interface SyntheticOptions {
  tokens?: number;
  /** Layer whose fused qkv has k and v swapped in the engine. */
  swapKvInLayer?: number;
  /** Disturb the decode call's attention output of this layer. */
  decodeBugInLayer?: number;
}

export function syntheticCaptures(options: SyntheticOptions = {}) {
  const T = options.tokens ?? 5;
  const H = 4;
  const random = seededRandom(7);
  const tensor = (shape: number[]) =>
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => random() * 2 - 1);
  const reference: CapturedRecord[] = [];
  const target: CapturedRecord[] = [];
  const push = (
    list: CapturedRecord[],
    module: string,
    output: string,
    call: number,
    shape: number[],
    data: Float32Array,
  ) =>
    list.push({
      name: `${module}#${call}/${output}`,
      seq: list.length,
      module,
      className: module.split('.').pop() || 'Model',
      call,
      output,
      dtype: 'float32',
      shape,
      data,
      source: { file: `/src/${module.split('.').pop() || 'model'}.py`, line: 10 },
    });
  // Token rows [T, width] → the engine's calls: rows [0, T-1) then [T-1, T).
  const rows = (data: Float32Array, width: number, start: number, end: number) =>
    data.slice(start * width, end * width);
  const calls: [number, number][] = [
    [0, T - 1],
    [T - 1, T],
  ];
  const embed = tensor([T, H]);
  push(reference, 'model.embed_tokens', '', 1, [1, T, H], embed);
  let residualIn = embed;
  const layerValues: Record<string, Float32Array>[] = [];
  for (let n = 0; n < 2; n++) {
    const values: Record<string, Float32Array> = {};
    values.norm = tensor([T, H]);
    values.q = tensor([T, 4]);
    values.k = tensor([T, 2]);
    values.v = tensor([T, 2]);
    values.attn = tensor([T, H]);
    values.mlp = tensor([T, H]);
    values.residualIn = residualIn;
    const layerOut = new Float32Array(T * H);
    for (let i = 0; i < layerOut.length; i++)
      layerOut[i] = residualIn[i]! + values.attn[i]! + values.mlp[i]!;
    values.out = layerOut;
    const p = `model.layers.${n}`;
    push(reference, `${p}.input_layernorm`, '', 1, [1, T, H], values.norm);
    push(reference, `${p}.self_attn.q_proj`, '', 1, [1, T, 4], values.q);
    push(reference, `${p}.self_attn.k_proj`, '', 1, [1, T, 2], values.k);
    push(reference, `${p}.self_attn.v_proj`, '', 1, [1, T, 2], values.v);
    push(reference, `${p}.self_attn`, '', 1, [1, T, H], values.attn);
    push(reference, `${p}.mlp`, '', 1, [1, T, H], values.mlp);
    push(reference, p, '', 1, [1, T, H], layerOut);
    layerValues.push(values);
    residualIn = layerOut;
  }
  // A bug's error flows downstream: every later value of the same call is disturbed too.
  const disturb = (data: Float32Array) => data.map((x) => x * 1.5 + 0.3);
  for (const [c, [start, end]] of calls.entries()) {
    const call = c + 1;
    const n = end - start;
    let poisoned = false;
    const pushTarget = (module: string, output: string, shape: number[], data: Float32Array) =>
      push(target, module, output, call, shape, poisoned ? disturb(data) : data);
    for (const [layer, values] of layerValues.entries()) {
      const p = `model.layers.${layer}`;
      const cut = (name: string, width: number) => rows(values[name]!, width, start, end);
      pushTarget(`${p}.input_layernorm`, '0', [n, H], cut('norm', H));
      pushTarget(`${p}.input_layernorm`, '1', [n, H], cut('residualIn', H));
      const [q, k, v] = [cut('q', 4), cut('k', 2), cut('v', 2)];
      const qkv = new Float32Array(n * 8);
      const swap = options.swapKvInLayer === layer;
      for (let r = 0; r < n; r++) {
        qkv.set(q.subarray(r * 4, r * 4 + 4), r * 8);
        qkv.set((swap ? v : k).subarray(r * 2, r * 2 + 2), r * 8 + 4);
        qkv.set((swap ? k : v).subarray(r * 2, r * 2 + 2), r * 8 + 6);
      }
      pushTarget(`${p}.self_attn.qkv_proj`, '', [n, 8], qkv);
      if (swap || (options.decodeBugInLayer === layer && call === 2)) poisoned = true;
      pushTarget(`${p}.self_attn`, '', [n, H], cut('attn', H));
      pushTarget(`${p}.mlp`, '', [n, H], cut('mlp', H));
      // The engine's layer returns (mlp_out, residual) whose sum is HF's layer output.
      const residual = new Float32Array(n * H);
      const mlp = cut('mlp', H);
      const out = cut('out', H);
      for (let i = 0; i < residual.length; i++) residual[i] = out[i]! - mlp[i]!;
      pushTarget(p, '0', [n, H], mlp);
      pushTarget(p, '1', [n, H], residual);
    }
  }
  return { target, reference, calls };
}
