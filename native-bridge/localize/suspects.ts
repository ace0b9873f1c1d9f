/**
 * Ranks the modules that may be responsible for a divergence.
 *
 * A correct module passes the error of its inputs through; a buggy one adds its own. The score of a
 * series point is its *own jump*: ln(max(ratio, 1)) − ln(max(input ratio, 1)), where the input ratio
 * is the largest ratio among the values that enter its module from other modules. Candidates are
 * the points from a few places before the change point onwards whose ratio reaches the threshold,
 * plus the points their error was inherited from: following each candidate's most divergent input
 * backwards reaches a value that diverged earlier but was consumed only later (an attention mask
 * built once and used by every layer), which the change point alone would pass over as a spike.
 * A module keeps its best point. Confidence is a module's share of the summed jump factors
 * e^score over all candidates, so one dominant jump reads close to 1 and a tie splits it.
 */

export interface SeriesPointForRanking {
  index: number;
  module: string;
  ratio: number;
  /** Largest ratio among the module's inputs compared before this point (1 when none). */
  inputRatio: number;
  /** Series index of the input with that ratio, when it is in the series. */
  inputIndex?: number;
  /** When the module reads a different value than in the reference: where that wiring lives. */
  rewired?: { module: string };
}

export interface RankedSuspect {
  module: string;
  /** Index of the module's best point in the series. */
  index: number;
  ratio: number;
  ownJump: number;
  confidence: number;
}

export interface RankingOptions {
  threshold: number;
  maxSuspects: number;
  /** Points before the change point still considered (alignment can misplace it by a few). */
  lookback: number;
}

export const DEFAULT_RANKING: RankingOptions = { threshold: 2, maxSuspects: 5, lookback: 3 };

export function ownJump(ratio: number, inputRatio: number): number {
  return Math.log(Math.max(ratio, 1)) - Math.log(Math.max(inputRatio, 1));
}

export function rankSuspects(
  points: readonly SeriesPointForRanking[],
  changePoint: number,
  options: RankingOptions = DEFAULT_RANKING,
): RankedSuspect[] {
  const candidates = new Set<number>();
  for (const point of points) {
    if (point.index < changePoint - options.lookback) continue;
    // Follow inherited error back to where it entered; the visited set bounds the walk.
    for (let at: SeriesPointForRanking | undefined = point; at && !candidates.has(at.index); ) {
      if (at.ratio < options.threshold) break;
      candidates.add(at.index);
      at =
        at.inputIndex === undefined || at.inputRatio < options.threshold
          ? undefined
          : points[at.inputIndex];
    }
  }
  const byModule = new Map<string, RankedSuspect>();
  for (const point of points) {
    if (!candidates.has(point.index)) continue;
    const jump = ownJump(point.ratio, point.inputRatio);
    // A rewired module computes correctly on the wrong input: its jump belongs to the wiring.
    const module = point.rewired?.module ?? point.module;
    const known = byModule.get(module);
    if (known && known.ownJump >= jump) continue;
    byModule.set(module, {
      module,
      index: point.index,
      ratio: point.ratio,
      ownJump: jump,
      confidence: 0,
    });
  }
  const ranked = [...byModule.values()].sort((a, b) => b.ownJump - a.ownJump || a.index - b.index);
  const top = ranked[0]?.ownJump ?? 0;
  // Shift by the top score before exponentiating: jumps of e^25 and more stay finite.
  const total = ranked.reduce((sum, s) => sum + Math.exp(s.ownJump - top), 0);
  for (const suspect of ranked) suspect.confidence = Math.exp(suspect.ownJump - top) / total;
  return ranked.slice(0, options.maxSuspects);
}
