import { samplingBand } from '../localize/samplingBand';
import { alignOps } from '../mapping/alignOps';
import type { CapturedRecord } from '../runners/capturedRecord';
import type { FloatDType } from '../tensors/dtypes';
import { measureRecords } from './measure';
import type { DrillDown, DrillOp } from './result';

/**
 * The statement inside a suspect (PyTorch runs): the suspect module runs once more in every run
 * on the reference's saved arguments for its first call, recording each tensor op its code calls
 * with the line that called it (the capture helper's `--drill`, see python/ekka_drill.py). The
 * target's ops are paired with the reference's (mapping/alignOps), each pair is measured like a
 * module output, and the statement is the first op whose output diverges while the ops it read
 * agree: the module's arguments agree by construction, so the first divergence is the module's
 * own.
 */

/** Drill-down records: `<module>#1/op.<k>` and `op.<k>.<j>`. */
export function isOpRecord(record: Pick<CapturedRecord, 'output'>): boolean {
  return record.output.startsWith('op.');
}

/** The op records of each drilled module, in execution order. */
export function opsByModule(records: readonly CapturedRecord[]): Map<string, CapturedRecord[]> {
  const byModule = new Map<string, CapturedRecord[]>();
  for (const record of records) {
    if (!isOpRecord(record)) continue;
    const ops = byModule.get(record.module) ?? [];
    ops.push(record);
    byModule.set(record.module, ops);
  }
  return byModule;
}

export interface DrillSides {
  target: readonly CapturedRecord[];
  reference: readonly CapturedRecord[];
  /** The low-precision reference's ops of the same module; without them, the analytic floor. */
  lowPrecision?: readonly CapturedRecord[];
}

/** A ratio read as divergent: at or above the bar and beyond what sampling alone reaches. */
function diverges(ratio: number | undefined, dof: number | undefined, bar: number): boolean {
  return ratio !== undefined && ratio >= Math.max(bar, samplingBand(dof));
}

/**
 * Pairs and measures one module's ops and finds its first own divergence. `relative` makes the
 * statements' files relative like every source in the result.
 */
export function drillModule(
  module: string,
  sides: DrillSides,
  options: {
    targetPrecision: FloatDType;
    floorFactor: number;
    /** The ratio at which an op's output diverges (the faint bar, thresholds.localRatio). */
    bar: number;
    relative: (file: string) => string;
  },
): DrillDown {
  const { target, reference } = sides;
  const lowByName = new Map(sides.lowPrecision?.map((r) => [r.name, r]) ?? []);
  const pairs = alignOps(
    target.map((r) => ({ op: r.op ?? '', shape: r.shape })),
    reference.map((r) => ({ op: r.op ?? '', shape: r.shape })),
  );
  const counterpart = new Map(pairs);
  const ops: DrillOp[] = [];
  const divergent = new Map<string, boolean>();
  const ratioOf = new Map<string, number>();
  let first: number | undefined;
  let firstDivergent: number | undefined;
  target.forEach((record, i) => {
    const j = counterpart.get(i);
    const ref = j === undefined ? undefined : reference[j]!;
    const low = ref && lowByName.get(ref.name);
    const measured =
      ref && measureRecords(record, ref, low, options.targetPrecision, options.floorFactor);
    const ratio = measured?.ratio.ratio;
    const out = diverges(ratio, measured?.ratio.noiseDof, options.bar);
    divergent.set(record.name, out);
    if (ratio !== undefined) ratioOf.set(record.name, ratio);
    // What it read from earlier ops (the module's arguments and weights agree by construction).
    const read = (record.inputs ?? []).filter((name) => divergent.has(name));
    const inputsAgree = read.every((name) => !divergent.get(name));
    const inputRatio = Math.max(1, ...read.map((name) => ratioOf.get(name) ?? 1));
    const index = ops.length;
    if (out && firstDivergent === undefined) firstDivergent = index;
    if (out && inputsAgree && first === undefined) first = index;
    ops.push({
      name: record.name,
      op: record.op ?? '',
      shape: record.shape,
      ...(ratio !== undefined ? { ratio } : {}),
      ...(ref ? { reference: ref.name } : {}),
      inputRatio,
      statement: record.statement
        ? { file: options.relative(record.statement.file), line: record.statement.line }
        : null,
    });
  });
  const found = first ?? firstDivergent;
  const missing =
    found === undefined ? [] : missingBefore(found, pairs, reference, options.relative);
  return {
    module,
    ops,
    ...(found !== undefined ? { first: found, inputsAgree: first !== undefined } : {}),
    ...(missing.length > 0 ? { missing } : {}),
    unpairedReference: reference.length - pairs.length,
  };
}

/**
 * The reference's ops that no target op stands for, between the pair before the target's op and
 * the op's own counterpart: what the reference computes there and the target does not (a
 * residual add left out).
 */
function missingBefore(
  index: number,
  pairs: readonly [number, number][],
  reference: readonly CapturedRecord[],
  relative: (file: string) => string,
): NonNullable<DrillDown['missing']> {
  const at = pairs.findIndex(([i]) => i === index);
  if (at < 0) return [];
  const from = at > 0 ? pairs[at - 1]![1] + 1 : 0;
  return reference.slice(from, pairs[at]![1]).map((r) => ({
    op: r.op ?? '',
    statement: r.statement ? { file: relative(r.statement.file), line: r.statement.line } : null,
  }));
}
