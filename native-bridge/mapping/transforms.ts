import type { Combine } from './mappingRule';

/** A tensor during alignment: values widened to float, and its shape. */
export interface AlignedTensor {
  data: Float32Array | Float64Array;
  shape: number[];
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Combines several tensors into one (see MappingRule.targetCombine). */
export function combine(tensors: readonly AlignedTensor[], how: Combine): AlignedTensor {
  if (tensors.length === 1) return tensors[0]!;
  const [first] = tensors;
  if (how === 'concat') {
    const lead = first!.shape.slice(0, -1);
    const rows = size(lead);
    for (const t of tensors) {
      if (t.shape.length !== first!.shape.length || size(t.shape.slice(0, -1)) !== rows) {
        throw new Error(
          `cannot concatenate [${t.shape.join(', ')}] with [${first!.shape.join(', ')}]`,
        );
      }
    }
    const widths = tensors.map((t) => t.shape[t.shape.length - 1] ?? 1);
    const total = widths.reduce((a, b) => a + b, 0);
    const out = new Float64Array(rows * total);
    for (let r = 0; r < rows; r++) {
      let column = 0;
      for (const [i, t] of tensors.entries()) {
        const w = widths[i]!;
        out.set(t.data.subarray(r * w, (r + 1) * w), r * total + column);
        column += w;
      }
    }
    return { data: out, shape: [...lead, total] };
  }
  for (const t of tensors) {
    if (t.data.length !== first!.data.length) {
      throw new Error(`cannot ${how} [${t.shape.join(', ')}] with [${first!.shape.join(', ')}]`);
    }
  }
  const out = new Float64Array(first!.data.length);
  if (how === 'sum') {
    for (const t of tensors) for (let i = 0; i < out.length; i++) out[i]! += t.data[i]!;
  } else {
    if (tensors.length !== 2) throw new Error('silu-mul takes exactly two tensors (gate, up)');
    const [gate, up] = tensors;
    for (let i = 0; i < out.length; i++) {
      const g = gate!.data[i]!;
      out[i] = (g / (1 + Math.exp(-g))) * up!.data[i]!;
    }
  }
  return { data: out, shape: [...first!.shape] };
}

/** Reorders axes: output axis k is input axis `axes[k]`. */
export function permute(tensor: AlignedTensor, axes: readonly number[]): AlignedTensor {
  const { shape, data } = tensor;
  if (axes.length !== shape.length || [...axes].sort((a, b) => a - b).some((a, i) => a !== i)) {
    throw new Error(`permutation [${axes.join(', ')}] does not fit shape [${shape.join(', ')}]`);
  }
  const outShape = axes.map((a) => shape[a]!);
  const strides = shape.map((_, i) => size(shape.slice(i + 1)));
  const out = new Float64Array(data.length);
  const index = new Array<number>(shape.length).fill(0);
  for (let flat = 0; flat < out.length; flat++) {
    let source = 0;
    for (let k = 0; k < axes.length; k++) source += index[k]! * strides[axes[k]!]!;
    out[flat] = data[source]!;
    for (let k = axes.length - 1; k >= 0; k--) {
      if (++index[k]! < outShape[k]!) break;
      index[k] = 0;
    }
  }
  return { data: out, shape: outShape };
}

/** Keeps positions [start, end) of `axis`. */
export function sliceAxis(
  tensor: AlignedTensor,
  axis: number,
  start: number,
  end: number,
): AlignedTensor {
  const { shape, data } = tensor;
  const outer = size(shape.slice(0, axis));
  const inner = size(shape.slice(axis + 1));
  const length = shape[axis]!;
  const out = new Float64Array(outer * (end - start) * inner);
  for (let o = 0; o < outer; o++) {
    out.set(
      data.subarray((o * length + start) * inner, (o * length + end) * inner),
      o * (end - start) * inner,
    );
  }
  const outShape = [...shape];
  outShape[axis] = end - start;
  return { data: out, shape: outShape };
}

/**
 * The token axis of a tensor: the first axis of size `tokens`, after any leading batch axes of
 * size 1. Undefined when there is none.
 */
export function tokenAxis(shape: readonly number[], tokens: number): number | undefined {
  for (let axis = 0; axis < shape.length; axis++) {
    if (shape[axis] === tokens) return axis;
    if (shape[axis] !== 1) return undefined;
  }
  return undefined;
}

/** Shapes without their size-1 axes: `[1, 16, 64]` and `[16, 64]` hold the same layout. */
export function squeezed(shape: readonly number[]): number[] {
  return shape.filter((d) => d !== 1);
}
