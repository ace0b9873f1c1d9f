/**
 * The modules that may be responsible for a divergence, judged along the data path.
 *
 * A correct module passes the error of its inputs through; a buggy one adds its own. Each series
 * point carries the largest ratio among the values it reads (`inputRatio`: graph edges for ONNX,
 * the module's real inputs for captures). A point is a **local divergence** when its ratio reaches
 * the threshold while everything it reads is within noise: the error starts there, whatever the
 * residual stream does with it one module later (a branch bug at 3 × noise diluted by the
 * residual add is still a bug). A point whose inputs already diverge but which multiplies their
 * error by the threshold or more again is an **amplifier**: a second bug, or a module that
 * magnifies what it receives.
 *
 * Ranking: local divergences first, in data order (the first one is where the output started to go
 * wrong; a later one may be a consequence the graph does not show, or a second bug), then
 * amplifiers by own jump. A module keeps its best point. A point whose inputs are rewired (the
 * target reads another value than the reference) or unpaired (the value it reads has no
 * counterpart: an op missing in the target) is blamed on the module that holds that wiring.
 *
 * Confidence is a per-suspect score, not a share: it grows with the margin of the own jump over
 * the threshold (in log units), and is halved for amplifiers. How well it is calibrated is
 * measured by the benchmark (docs/benchmark.md, reliability diagram).
 */

export interface SeriesPointForRanking {
  index: number;
  module: string;
  ratio: number;
  /** Largest ratio among the values the module reads (1 when none is compared). */
  inputRatio: number;
  /** Series index of the input with that ratio, when it is in the series. */
  inputIndex?: number;
  /** When the module reads a different value than in the reference: where that wiring lives. */
  rewired?: { module: string };
  /** When a value the module reads has no counterpart in the other run: who produced it. */
  unpairedInput?: { module: string };
  /** What the ratio is measured against; 'analytic-floor' enables the sub-floor test. */
  noiseSource?: string;
  /** The value's type: the sub-floor test reads floats only (a flipped index is no rounding). */
  dtype?: string;
}

/**
 * The input a point reads with the largest ratio: `inputIndex` is set whenever one of its inputs
 * is in the series (below noise too: the edge is what the rate-of-change and sub-floor tests
 * read), `inputRatio` is that ratio but at least 1.
 */
export function largestInput(
  series: readonly { ratio: number }[],
  indices: Iterable<number | undefined>,
): { inputIndex?: number; inputRatio: number } {
  let inputIndex: number | undefined;
  for (const index of indices) {
    if (index === undefined || !series[index]) continue;
    if (inputIndex === undefined || series[index].ratio > series[inputIndex]!.ratio) {
      inputIndex = index;
    }
  }
  if (inputIndex === undefined) return { inputRatio: 1 };
  return { inputIndex, inputRatio: Math.max(1, series[inputIndex]!.ratio) };
}

export type SuspectKind = 'local' | 'amplifier';

export interface RankedSuspect {
  module: string;
  /** Index of the module's best point in the series. */
  index: number;
  ratio: number;
  ownJump: number;
  kind: SuspectKind;
  confidence: number;
}

export interface RankingOptions {
  threshold: number;
  maxSuspects: number;
  /** γ of the analytic floor: a ratio of k/γ there is k unit roundoffs of relative error. */
  floorFactor: number;
}

export const DEFAULT_RANKING: RankingOptions = { threshold: 2, maxSuspects: 5, floorFactor: 64 };

export function ownJump(ratio: number, inputRatio: number): number {
  return Math.log(Math.max(ratio, 1)) - Math.log(Math.max(inputRatio, 1));
}

/**
 * The own jump of a float16/bfloat16 value measured against the analytic floor, when it is a
 * divergence the floor hides: γ·u bounds what a whole chain of correct modules may accumulate, so
 * a module's error can stay under it and still be its own. Such a point is a local divergence
 * when its error is threshold² times the largest error it reads (correct modules stay under
 * 1.6 × on the benchmark's dev split) and at least `threshold` unit roundoffs (one rounding of an
 * exact input gives half of one). Returns the jump in log units, or undefined when the test does
 * not apply or fails.
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
  return jump >= 2 * Math.log(options.threshold) ? jump : undefined;
}

const LOW_PRECISION = new Set(['float16', 'bfloat16']);

/** How a point reads: local divergence, amplifier, or neither. */
export function classifyPoint(
  point: SeriesPointForRanking,
  threshold: number,
): SuspectKind | undefined {
  if (!(point.ratio >= threshold)) return undefined;
  if (point.inputRatio < threshold) return 'local';
  return ownJump(point.ratio, point.inputRatio) >= Math.log(threshold) ? 'amplifier' : undefined;
}

/** Margin over the threshold, in log units, mapped to (0, 1): ×threshold² reads 0.63, ×threshold³ 0.86. */
export function suspectConfidence(jump: number, kind: SuspectKind, threshold: number): number {
  const margin = Math.max(0, jump - Math.log(threshold)) / Math.log(threshold);
  const score = 1 - Math.exp(-margin);
  return kind === 'local' ? score : score / 2;
}

export function rankSuspects(
  points: readonly SeriesPointForRanking[],
  options: RankingOptions = DEFAULT_RANKING,
): RankedSuspect[] {
  const byModule = new Map<string, RankedSuspect>();
  const order: string[] = [];
  for (const point of points) {
    const input = point.inputIndex === undefined ? undefined : points[point.inputIndex];
    const below = subFloorJump(point, input?.ratio ?? 0, options);
    const kind = below === undefined ? classifyPoint(point, options.threshold) : 'local';
    if (!kind) continue;
    const jump = below ?? ownJump(point.ratio, point.inputRatio);
    // A module that computes correctly on a wrongly wired input: the jump belongs to the wiring.
    const module = point.unpairedInput?.module ?? point.rewired?.module ?? point.module;
    const known = byModule.get(module);
    const suspect: RankedSuspect = {
      module,
      index: point.index,
      ratio: point.ratio,
      ownJump: jump,
      kind,
      // Under the floor the bar is threshold², and the evidence is weaker: half the score.
      confidence:
        below === undefined
          ? suspectConfidence(jump, kind, options.threshold)
          : suspectConfidence(below - Math.log(options.threshold), kind, options.threshold) / 2,
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
  const locals = suspects.filter((s) => s.kind === 'local').sort((a, b) => a.index - b.index);
  const amplifiers = suspects
    .filter((s) => s.kind === 'amplifier')
    .sort((a, b) => b.ownJump - a.ownJump || a.index - b.index);
  return [...locals, ...amplifiers].slice(0, options.maxSuspects);
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
