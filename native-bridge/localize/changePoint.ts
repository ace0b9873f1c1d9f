/**
 * Change-point analysis over the sequence of error ratios in execution order.
 *
 * The signal is y = ln(max(ratio, 1)): noise-level modules sit at 0 and a module that adds error
 * starts a level shift. PELT (Killick et al., 2012) with a Gaussian mean-shift cost segments y
 * exactly under a penalty β = penaltyScale · σ² · ln(n); σ is estimated robustly from the first
 * differences (MAD), so one wild value does not inflate it. A segment is *elevated* when its mean
 * ratio (geometric) reaches `threshold`. A run starts at an elevated segment and, with hysteresis,
 * goes on through the following segments while their mean stays at or above `exitRatio` (default
 * √threshold): inherited error often settles a little below the entry level after the module that
 * caused it. The change point is the start of the first run that lasts `minRun` points or reaches
 * the end of the sequence. A lone spike that falls back to noise is reported as a spike.
 */

export interface ChangePointOptions {
  /** Geometric-mean ratio from which a segment counts as elevated. Default 2 (published: 1.5–2.5). */
  threshold: number;
  /** Shortest elevated run that counts as persistent, unless it reaches the end. Default 3. */
  minRun: number;
  /** Multiplies σ² ln(n) in the PELT penalty. Default 2 (BIC-like). */
  penaltyScale: number;
  /** Lower bound on σ (natural-log units), so an exactly flat noise region does not over-segment. */
  minSigma: number;
  /** Level a run must stay at or above once started; default √threshold. */
  exitRatio?: number;
}

export const DEFAULT_CHANGE_POINT: ChangePointOptions = {
  threshold: 2,
  minRun: 3,
  penaltyScale: 2,
  minSigma: 0.1,
};

export interface Segment {
  start: number;
  /** Exclusive. */
  end: number;
  /** Mean of ln(max(ratio, 1)) over the segment. */
  meanLogRatio: number;
  elevated: boolean;
}

export interface ChangePointResult {
  /** Index of the first persistently elevated point, or null when the sequence is noise. */
  index: number | null;
  segments: Segment[];
  /** Starts of elevated runs rejected as too short (spikes). */
  spikes: number[];
  sigma: number;
  penalty: number;
}

export function logRatioSignal(ratios: readonly number[]): number[] {
  return ratios.map((r) => Math.log(Math.max(Number.isFinite(r) ? r : Number.MAX_VALUE, 1)));
}

/** The middle value (the mean of the two middle ones for an even count); 0 for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** σ from the median absolute first difference: differences of iid noise have σ√2. */
export function robustSigma(y: readonly number[]): number {
  const diffs: number[] = [];
  for (let i = 1; i < y.length; i++) diffs.push(Math.abs(y[i]! - y[i - 1]!));
  return median(diffs) / 0.6745 / Math.SQRT2;
}

/**
 * Optimal segmentation of y under the mean-shift cost with penalty β per change (PELT).
 * Returns the start index of every segment after the first.
 */
export function pelt(y: readonly number[], penalty: number): number[] {
  const n = y.length;
  const s1 = new Float64Array(n + 1);
  const s2 = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) {
    s1[i + 1] = s1[i]! + y[i]!;
    s2[i + 1] = s2[i]! + y[i]! * y[i]!;
  }
  const cost = (a: number, b: number): number => {
    const len = b - a;
    const sum = s1[b]! - s1[a]!;
    return s2[b]! - s2[a]! - (sum * sum) / len;
  };
  const best = new Float64Array(n + 1);
  const previous = new Int32Array(n + 1);
  best[0] = -penalty;
  let candidates = [0];
  for (let t = 1; t <= n; t++) {
    let bestValue = Infinity;
    let bestTau = 0;
    const values = candidates.map((tau) => best[tau]! + cost(tau, t) + penalty);
    values.forEach((v, k) => {
      if (v < bestValue) {
        bestValue = v;
        bestTau = candidates[k]!;
      }
    });
    best[t] = bestValue;
    previous[t] = bestTau;
    // Pruning: a split point that cannot beat the optimum now never will (cost is additive).
    candidates = candidates.filter((_, k) => values[k]! - penalty <= bestValue);
    candidates.push(t);
  }
  const starts: number[] = [];
  for (let t = n; t > 0; t = previous[t]!) if (previous[t]! > 0) starts.push(previous[t]!);
  return starts.reverse();
}

export function detectChangePoint(
  ratios: readonly number[],
  options: ChangePointOptions = DEFAULT_CHANGE_POINT,
): ChangePointResult {
  const y = logRatioSignal(ratios);
  const n = y.length;
  const sigma = Math.max(robustSigma(y), options.minSigma);
  const penalty = options.penaltyScale * sigma * sigma * Math.log(Math.max(n, 2));
  if (n === 0) return { index: null, segments: [], spikes: [], sigma, penalty };
  const bounds = [0, ...pelt(y, penalty), n];
  const logThreshold = Math.log(options.threshold);
  const segments: Segment[] = [];
  for (let k = 0; k + 1 < bounds.length; k++) {
    const start = bounds[k]!;
    const end = bounds[k + 1]!;
    let sum = 0;
    for (let i = start; i < end; i++) sum += y[i]!;
    const meanLogRatio = sum / (end - start);
    segments.push({ start, end, meanLogRatio, elevated: meanLogRatio >= logThreshold });
  }
  const spikes: number[] = [];
  const logExit = Math.log(options.exitRatio ?? Math.sqrt(options.threshold));
  for (let k = 0; k < segments.length; k++) {
    if (!segments[k]!.elevated) continue;
    let last = k;
    while (last + 1 < segments.length && segments[last + 1]!.meanLogRatio >= logExit) last++;
    const start = segments[k]!.start;
    const end = segments[last]!.end;
    if (end - start >= options.minRun || end === n) {
      return { index: start, segments, spikes, sigma, penalty };
    }
    spikes.push(start);
    k = last;
  }
  return { index: null, segments, spikes, sigma, penalty };
}
