/**
 * Pairs the ops of one module as two runs called them (a drill-down's op records), in order. Two
 * ops can pair when their outputs have the same shape; the same op name scores higher, so an
 * unfused sequence keeps its one-to-one pairs, and a fused op (`F.rms_norm`) pairs with the op
 * of the other side that ends its group (the last same-shaped op before the next pair): the ops
 * of that group in between have no counterpart. The alignment maximises the total score (a
 * longest-common-subsequence table), so one side's extra op cannot shift every pair after it.
 */

export interface AlignedOp {
  op: string;
  shape: readonly number[];
}

const SAME_OP = 2;
const SAME_SHAPE = 1;

function score(a: AlignedOp, b: AlignedOp): number {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) return 0;
  return a.op === b.op ? SAME_OP : SAME_SHAPE;
}

/** Index pairs `[target, reference]`, increasing in both. */
export function alignOps(
  target: readonly AlignedOp[],
  reference: readonly AlignedOp[],
): [number, number][] {
  const n = target.length;
  const m = reference.length;
  const width = m + 1;
  // best[i * width + j]: the highest score aligning target[i..] with reference[j..].
  const best = new Float64Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      const s = score(target[i]!, reference[j]!);
      const pair = s > 0 ? s + best[(i + 1) * width + j + 1]! : -1;
      best[i * width + j] = Math.max(pair, best[(i + 1) * width + j]!, best[i * width + j + 1]!);
    }
  }
  const pairs: [number, number][] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    const here = best[i * width + j]!;
    // Skipping a reference op first: of equal alignments, the one pairing the later reference
    // op (the end of a group a fused op stands for).
    if (best[i * width + j + 1] === here) j++;
    else if (best[(i + 1) * width + j] === here) i++;
    else {
      pairs.push([i, j]);
      i++;
      j++;
    }
  }
  return pairs;
}
