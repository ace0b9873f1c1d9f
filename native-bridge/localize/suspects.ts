/**
 * The modules that may be responsible for a divergence, judged along the data path.
 *
 * A correct module passes the error of its inputs through; a buggy one adds its own. Each series
 * point carries the largest ratio among the values it reads (`inputRatio`: graph edges for ONNX,
 * the module's real inputs for captures). A point is a **local divergence** when its ratio reaches
 * the threshold while everything it reads is within noise: the error starts there, whatever the
 * residual stream does with it one module later (a branch bug at 3 × noise diluted by the
 * residual add is still a bug). A fainter one is local too when both its ratio and the factor by
 * which it multiplies the largest error it reads reach `localRatio` (1.5): on the benchmark's dev
 * split no correct module multiplies what it reads by more than 1.37 (2215 module outputs of 44
 * controls, measured noise). A PyTorch leaf module run on the reference's inputs (a graft,
 * diagnosis/grafts) whose own ratio reaches `localRatio` is local too, whatever the run reads. A
 * point whose inputs already diverge but which multiplies their error by the threshold or more
 * again is an **amplifier**: a second bug, or a module that magnifies what it receives.
 *
 * Ranking: local divergences first, in data order (the first one is where the output started to go
 * wrong; a later one may be a consequence the graph does not show, or a second bug), then
 * amplifiers by own jump. A module keeps its best point. A point whose inputs are rewired (the
 * target reads another value than the reference) or unpaired (the value it reads has no
 * counterpart: an op missing in the target) is blamed on the module that holds that wiring.
 *
 * Confidence is a probability read from the benchmark's dev split: how often a top suspect with
 * the same evidence (local, faint local, under the floor, amplifier) was the bug there, with one
 * success and one failure added (Laplace). Suspects further down share what the ones above leave.
 * How well it holds on cases it was not fitted on is the test split's reliability table
 * (docs/benchmark.md).
 */

import { isFloatDType } from '../tensors/dtypes';

export interface SeriesPointForRanking {
  index: number;
  module: string;
  ratio: number;
  /** Largest ratio among the values the module reads (1 when none is compared). */
  inputRatio: number;
  /** Series index of the input with that ratio, when it is in the series. */
  inputIndex?: number;
  /** Series index of a decision (integer or boolean) the module reads that differs between runs. */
  decisionInput?: number;
  /** When the module reads a different value than in the reference: where that wiring lives. */
  rewired?: { module: string };
  /** When a value the module reads has no counterpart in the other run: who produced it. */
  unpairedInput?: { module: string };
  /** What the ratio is measured against; 'analytic-floor' enables the sub-floor test. */
  noiseSource?: string;
  /** The value's type: the sub-floor test reads floats only (a flipped index is no rounding). */
  dtype?: string;
  /** PyTorch leaf modules: the ratio of the module run on the reference's inputs (its own). */
  ownRatio?: number;
}

/**
 * The input a point reads with the largest ratio: `inputIndex` is set whenever one of its inputs
 * is in the series (below noise too: the edge is what the rate-of-change and sub-floor tests
 * read), `inputRatio` is that ratio but at least 1. `decisionInput` is the first input that holds
 * a decision (an integer or boolean value: top-k indices, a routing mask) and differs between the
 * runs.
 */
export function largestInput(
  series: readonly { ratio: number; dtype?: string }[],
  indices: Iterable<number | undefined>,
): { inputIndex?: number; inputRatio: number; decisionInput?: number } {
  let inputIndex: number | undefined;
  let decisionInput: number | undefined;
  for (const index of indices) {
    if (index === undefined || !series[index]) continue;
    const input = series[index];
    if (decisionInput === undefined && isDecision(input) && input.ratio > 0) decisionInput = index;
    if (inputIndex === undefined || input.ratio > series[inputIndex]!.ratio) {
      inputIndex = index;
    }
  }
  const decision = decisionInput === undefined ? {} : { decisionInput };
  if (inputIndex === undefined) return { inputRatio: 1, ...decision };
  return { inputIndex, inputRatio: Math.max(1, series[inputIndex]!.ratio), ...decision };
}

const isDecision = (point: { dtype?: string }) =>
  point.dtype !== undefined && !isFloatDType(point.dtype);

/**
 * A point that reads a decision flipped within noise (a router's near tie that the target breaks
 * the other way): its error is the other branch's output, not a computation gone wrong. It is
 * nobody's divergence; when the decision flips beyond noise, the decision's own point is the
 * suspect.
 */
export function followsFlippedDecision(
  points: readonly SeriesPointForRanking[],
  point: SeriesPointForRanking,
  threshold: number,
): boolean {
  const decision = point.decisionInput === undefined ? undefined : points[point.decisionInput];
  return decision !== undefined && decision.ratio < threshold;
}

export type SuspectKind = 'local' | 'amplifier';

export interface RankedSuspect {
  module: string;
  /** Index of the module's best point in the series. */
  index: number;
  ratio: number;
  ownJump: number;
  kind: SuspectKind;
  /** Set for a local divergence under the threshold: which lower bar it passed. */
  under?: SuspectUnder;
  /** Its graft reads within noise (graftClears): ranked after every suspect that is not. */
  cleared?: boolean;
  confidence: number;
}

/**
 * `threshold`: ratio and own factor at least localRatio; `analytic-floor`: see subFloorJump;
 * `graft`: run on the reference's inputs, its own ratio reaches localRatio (see graftJump).
 */
export type SuspectUnder = 'threshold' | 'analytic-floor' | 'graft';

export interface RankingOptions {
  threshold: number;
  /** The faint local bar: ratio and own factor both at least this (below `threshold`). */
  localRatio: number;
  maxSuspects: number;
  /** γ of the analytic floor: a ratio of k/γ there is k unit roundoffs of relative error. */
  floorFactor: number;
}

export const DEFAULT_RANKING: RankingOptions = {
  threshold: 2,
  localRatio: 1.5,
  maxSuspects: 5,
  floorFactor: 64,
};

/**
 * Under the analytic floor, the factor by which a module must multiply the error it reads to be a
 * local divergence. Correct modules reach 2.11 on the benchmark's dev split (a decoder's first norm
 * re-rounding an embedding that carries a single rounding); 1036 module outputs of the controls
 * divided by the floor.
 */
export const SUB_FLOOR_FACTOR = 2.5;

export function ownJump(ratio: number, inputRatio: number): number {
  return Math.log(Math.max(ratio, 1)) - Math.log(Math.max(inputRatio, 1));
}

/**
 * The own jump of a float16/bfloat16 value measured against the analytic floor, when it is a
 * divergence the floor hides: γ·u bounds what a whole chain of correct modules may accumulate, so
 * a module's error can stay under it and still be its own. Such a point is a local divergence
 * when its error is SUB_FLOOR_FACTOR times the largest error it reads and at least `threshold`
 * unit roundoffs (one rounding of an exact input gives half of one). Returns the jump in log
 * units, or undefined when the test does not apply or fails.
 */
export function subFloorJump(
  point: SeriesPointForRanking,
  inputLevel: number,
  options: Pick<RankingOptions, 'threshold' | 'floorFactor'>,
): number | undefined {
  if (point.noiseSource !== 'analytic-floor' || point.ratio >= options.threshold) return undefined;
  // At float16/bfloat16 a correct module's own error is the rounding of its output (its sums run
  // in float32); a float32 value carries its reduction order instead (a tensor-parallel sum reads
  // several u), and the floor there is tight already.
  if (point.dtype !== undefined && !LOW_PRECISION.has(point.dtype)) return undefined;
  const unit = 1 / options.floorFactor;
  if (!(point.ratio >= options.threshold * unit)) return undefined;
  const jump = Math.log(point.ratio / Math.max(inputLevel, unit / 2));
  return jump >= Math.log(SUB_FLOOR_FACTOR) ? jump : undefined;
}

const LOW_PRECISION = new Set(['float16', 'bfloat16']);

/**
 * A local divergence under the threshold: ratio and own factor both reach `localRatio` (a module
 * that adds half the noise again to clean inputs); float values only. Returns the own jump in log
 * units, else undefined.
 */
export function faintLocalJump(
  point: SeriesPointForRanking,
  options: Pick<RankingOptions, 'threshold' | 'localRatio'>,
): number | undefined {
  if (!(point.ratio < options.threshold) || !(point.ratio >= options.localRatio)) return undefined;
  // A decision's ratio counts flips against the low-precision reference's: 3 flips where it makes
  // 2 is a near tie, not half the noise again.
  if (isDecision(point)) return undefined;
  const jump = ownJump(point.ratio, point.inputRatio);
  return jump >= Math.log(options.localRatio) ? jump : undefined;
}

/**
 * A leaf module whose own ratio (run on the reference's inputs, in the target and in the
 * low-precision reference) reaches `localRatio` while the run's ratio does not make it a local
 * divergence: the error it adds is its own, however little the run shows of it (what its inputs
 * carried is gone from a graft). Correct leaves run the same code on the same inputs as the
 * low-precision reference and read 1 (other kernels: at most 1.07 on the benchmark's dev split,
 * fused norms and SDPA attention). Returns ln(own ratio), else undefined.
 */
export function graftJump(
  point: SeriesPointForRanking,
  options: Pick<RankingOptions, 'localRatio'>,
): number | undefined {
  if (point.ownRatio === undefined || !(point.ownRatio >= options.localRatio)) return undefined;
  if (isDecision(point)) return undefined;
  return Math.log(point.ownRatio);
}

/**
 * A leaf module whose graft reads within noise: run on the reference's inputs it computes what the
 * low-precision reference does, so whatever error it shows in the run came in with its inputs.
 */
export function graftClears(
  point: Pick<SeriesPointForRanking, 'ownRatio'>,
  options: Pick<RankingOptions, 'localRatio'>,
): boolean {
  return point.ownRatio !== undefined && point.ownRatio < options.localRatio;
}

/** How a point reads: local divergence, amplifier, or neither. */
export function classifyPoint(
  point: Pick<SeriesPointForRanking, 'ratio' | 'inputRatio'>,
  threshold: number,
): SuspectKind | undefined {
  if (!(point.ratio >= threshold)) return undefined;
  if (point.inputRatio < threshold) return 'local';
  return ownJump(point.ratio, point.inputRatio) >= Math.log(threshold) ? 'amplifier' : undefined;
}

/**
 * A point above the threshold that reads error at least as large and is no amplifier (it
 * multiplies that error by less than the threshold): its error came in with its inputs. Such
 * points are shown as inherited, never as suspects.
 */
export function inheritsError(
  point: Pick<SeriesPointForRanking, 'ratio' | 'inputRatio'>,
  threshold: number,
): boolean {
  return (
    point.ratio >= threshold &&
    point.inputRatio >= threshold &&
    classifyPoint(point, threshold) === undefined
  );
}

/** The bar a suspect passed. */
export type Evidence = 'local' | 'faint local' | 'under the floor' | 'own on graft' | 'amplifier';

export function evidenceOf(suspect: { kind?: SuspectKind; under?: SuspectUnder }): Evidence {
  if (suspect.under === 'threshold') return 'faint local';
  if (suspect.under === 'graft') return 'own on graft';
  if (suspect.under === 'analytic-floor') return 'under the floor';
  return suspect.kind === 'amplifier' ? 'amplifier' : 'local';
}

/**
 * Top suspects that were the bug, of top suspects with that evidence, on the dev split of
 * `npm run bench:accuracy` ("Reliability by evidence"; bug cases and controls with an alarm).
 * Fitted on the dev run before flipped decisions were set aside: its one wrong local suspect (a router's
 * near tie) is no alarm since, so today's dev table reads 119 of 119.
 */
export const DEV_RELIABILITY: Record<Evidence, { right: number; alarms: number }> = {
  local: { right: 119, alarms: 120 },
  'faint local': { right: 6, alarms: 6 },
  'under the floor': { right: 12, alarms: 12 },
  'own on graft': { right: 0, alarms: 0 },
  amplifier: { right: 0, alarms: 0 },
};

/** How often a top suspect with this evidence is right: (right + 1) / (alarms + 2). */
export function evidenceReliability(evidence: Evidence): number {
  const { right, alarms } = DEV_RELIABILITY[evidence];
  return (right + 1) / (alarms + 2);
}

/** Confidence down the ranking: each suspect takes its reliability of what the ones above leave. */
function withConfidence(ranked: RankedSuspect[]): RankedSuspect[] {
  let left = 1;
  return ranked.map((suspect) => {
    const confidence = left * evidenceReliability(evidenceOf(suspect));
    left -= confidence;
    return { ...suspect, confidence };
  });
}

export function rankSuspects(
  points: readonly SeriesPointForRanking[],
  options: RankingOptions = DEFAULT_RANKING,
): RankedSuspect[] {
  const byModule = new Map<string, RankedSuspect>();
  const order: string[] = [];
  for (const point of points) {
    if (followsFlippedDecision(points, point, options.threshold)) continue;
    const input = point.inputIndex === undefined ? undefined : points[point.inputIndex];
    const below = subFloorJump(point, input?.ratio ?? 0, options);
    const faint = below === undefined ? faintLocalJump(point, options) : undefined;
    const run = below ?? faint;
    const runKind = run === undefined ? classifyPoint(point, options.threshold) : 'local';
    const grafted = runKind === 'local' ? undefined : graftJump(point, options);
    const kind = grafted === undefined ? runKind : 'local';
    if (!kind) continue;
    const jump = grafted ?? run ?? ownJump(point.ratio, point.inputRatio);
    // A module that computes correctly on a wrongly wired input: the jump belongs to the wiring.
    const module = point.unpairedInput?.module ?? point.rewired?.module ?? point.module;
    const known = byModule.get(module);
    const suspect: RankedSuspect = {
      module,
      index: point.index,
      ratio: point.ratio,
      ownJump: jump,
      kind,
      ...(grafted !== undefined
        ? { under: 'graft' as const }
        : below !== undefined
          ? { under: 'analytic-floor' as const }
          : faint !== undefined
            ? { under: 'threshold' as const }
            : {}),
      ...(graftClears(point, options) ? { cleared: true } : {}),
      confidence: 0,
    };
    if (!known) {
      order.push(module);
      byModule.set(module, suspect);
    } else if (
      (kind === 'local' && known.kind !== 'local') ||
      (kind === known.kind && jump > known.ownJump)
    ) {
      // The first point of the module keeps its place in data order; its best evidence counts.
      byModule.set(module, { ...suspect, index: kind === known.kind ? known.index : point.index });
    }
  }
  const suspects = order.map((module) => byModule.get(module)!);
  const kept = suspects.filter((s) => !s.cleared);
  const locals = kept.filter((s) => s.kind === 'local').sort((a, b) => a.index - b.index);
  const amplifiers = kept
    .filter((s) => s.kind === 'amplifier')
    .sort((a, b) => b.ownJump - a.ownJump || a.index - b.index);
  // Suspects a graft clears keep their place among themselves, after every other.
  const cleared = suspects.filter((s) => s.cleared);
  return withConfidence([...locals, ...amplifiers, ...cleared].slice(0, options.maxSuspects));
}

/**
 * Where the change point's error entered: its inputs followed back while they stay above the
 * threshold. The change point is the chart's summary; this is the suspect it names.
 */
export function originOf(
  points: readonly SeriesPointForRanking[],
  index: number,
  threshold: number,
): number {
  const seen = new Set<number>();
  let at = index;
  while (!seen.has(at)) {
    seen.add(at);
    const next = points[at]!.inputIndex;
    if (next === undefined || points[at]!.inputRatio < threshold || !points[next]) break;
    at = next;
  }
  return at;
}
