import { detectChangePoint, type ChangePointResult } from '../localize/changePoint';
import {
  followsFlippedDecision,
  originOf,
  ownJump,
  rankSuspects,
  type RankedSuspect,
} from '../localize/suspects';
import { beyondSampling } from '../localize/samplingBand';
import type { Thresholds } from './config';
import type { DiagnosisResult, SeriesPoint } from './result';

/**
 * The change point of a compared series (the chart's summary) and the suspects: every local
 * divergence along the data path, persistent or not, then the amplifiers (localize/suspects). The
 * module where the change point's error entered is always among them, unless that error is the
 * other branch of a decision flipped within noise (then `notes` says so and no one is named).
 */
export function localizeSeries(
  measured: readonly SeriesPoint[],
  thresholds: Thresholds,
): {
  detection: ChangePointResult;
  ranked: RankedSuspect[];
  changePoint: DiagnosisResult['changePoint'];
  notes: string[];
} {
  const notes: string[] = [];
  // Ratios read from too few noisy elements to tell from noise count as noise.
  const series = beyondSampling(measured);
  const detection = detectChangePoint(
    series.map((p) => p.ratio),
    {
      threshold: thresholds.ratio,
      minRun: thresholds.minRun,
      penaltyScale: thresholds.penaltyScale,
      minSigma: 0.1,
    },
  );
  const options = {
    threshold: thresholds.ratio,
    localRatio: thresholds.localRatio,
    maxSuspects: thresholds.maxSuspects,
    floorFactor: thresholds.noiseFloorFactor,
  };
  const ranked = rankSuspects(series, { ...options, maxSuspects: Infinity });
  if (detection.index !== null) {
    const origin = series[originOf(series, detection.index, thresholds.ratio)]!;
    const module = origin.rewired?.module ?? origin.module;
    if (followsFlippedDecision(series, origin, thresholds.ratio)) {
      const decision = series[origin.decisionInput!]!;
      notes.push(
        `the divergence from #${origin.index} ${origin.module || '(root)'} follows a decision that flips within noise (#${decision.index} ${decision.key}, ratio ${decision.ratio.toPrecision(3)}): a near tie the target breaks the other way, not a module computing wrong; no suspect is named for it`,
      );
    } else if (!ranked.some((s) => s.module === module)) {
      ranked.push({
        module,
        index: origin.index,
        ratio: origin.ratio,
        ownJump: ownJump(origin.ratio, origin.inputRatio),
        kind: 'amplifier',
        confidence: 0,
      });
    }
  }
  // The change point's module survives the cut to maxSuspects.
  const keep = ranked.slice(0, options.maxSuspects);
  const at = detection.index === null ? undefined : series[detection.index]!;
  const changePoint = at ? { index: at.index, module: at.module, ratio: at.ratio } : null;
  const last = ranked[ranked.length - 1];
  if (last && last.confidence === 0 && !keep.includes(last)) keep[keep.length - 1] = last;
  return { detection, ranked: keep, changePoint, notes };
}

/** The thresholds a result reports. */
export function reportedThresholds(thresholds: Thresholds): DiagnosisResult['thresholds'] {
  return {
    ratio: thresholds.ratio,
    localRatio: thresholds.localRatio,
    minRun: thresholds.minRun,
    penaltyScale: thresholds.penaltyScale,
    lookback: thresholds.lookback,
  };
}

/**
 * What the user must know about a compared series that the ratios alone hide: a reference that is
 * NaN/Inf (its error is not measurable there) and empty values (nothing was compared).
 */
export function seriesWarnings(series: readonly SeriesPoint[]): string[] {
  const warnings: string[] = [];
  const nonFinite = series.filter((p) => p.reference.nan + p.reference.inf > 0);
  if (nonFinite.length > 0) {
    const first = nonFinite[0]!;
    warnings.push(
      `the reference holds NaN/Inf in ${nonFinite.length} of ${series.length} module outputs (first: #${first.index} ${first.module || '(root)'}): the target's error cannot be measured there`,
    );
  }
  const empty = series.filter((p) => p.shape.includes(0));
  if (empty.length > 0) {
    warnings.push(
      `${empty.length} of ${series.length} module outputs are empty (zero elements, e.g. #${empty[0]!.index} [${empty[0]!.shape.join(', ')}]): nothing was compared there`,
    );
  }
  return warnings;
}
