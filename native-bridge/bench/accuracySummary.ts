import type { CaseRecord, CaseScore, ScoredOutcome } from './accuracy';
import type { Evidence } from '../localize/suspects';

/** Rates of one method over a set of cases. */
export interface MethodTotals {
  pass1: number;
  pass5: number;
  falseAlarms: number;
  bugCases: number;
  controls: number;
}

export const methodsOf = (cases: readonly CaseRecord[]): string[] => [
  'ours',
  ...Object.keys(cases[0]?.baselines ?? {}),
];

const outcomeOf = (c: CaseRecord, method: string): ScoredOutcome =>
  method === 'ours' ? c.ours : c.baselines[method]!;

const isControl = (c: CaseRecord) => c.expected.module === null;

function rate(list: readonly CaseRecord[], method: string, field: keyof CaseScore): number {
  return list.length === 0
    ? 0
    : list.filter((c) => outcomeOf(c, method)[field]).length / list.length;
}

/** pass@1 and pass@5 over bug cases, false alarms over controls, per method. */
export function computeTotals(cases: readonly CaseRecord[]): Record<string, MethodTotals> {
  const bugs = cases.filter((c) => !isControl(c));
  const controls = cases.filter(isControl);
  return Object.fromEntries(
    methodsOf(cases).map((method) => [
      method,
      {
        pass1: rate(bugs, method, 'pass1'),
        pass5: rate(bugs, method, 'pass5'),
        falseAlarms: rate(controls, method, 'falseAlarm'),
        bugCases: bugs.length,
        controls: controls.length,
      },
    ]),
  );
}

/** Cases grouped by a label, groups in first-seen order. */
export function groupBy(
  cases: readonly CaseRecord[],
  label: (c: CaseRecord) => string,
): Map<string, CaseRecord[]> {
  const groups = new Map<string, CaseRecord[]>();
  for (const c of cases) {
    const key = label(c);
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  return groups;
}

/** The strength levels the generator sweeps; a measured strength falls in the nearest (log). */
export const STRENGTH_LEVELS = [1.5, 2, 3, 5, 10, 20] as const;

export function strengthLevel(strength: number): number {
  let best: number = STRENGTH_LEVELS[0];
  for (const level of STRENGTH_LEVELS) {
    if (Math.abs(Math.log(strength / level)) < Math.abs(Math.log(strength / best))) best = level;
  }
  return best;
}

export interface CurvePoint {
  level: number;
  cases: number;
  /** Share of cases whose module is among the top 5 of an alarm. */
  found: number;
  /** Share whose module ranks first. */
  top1: number;
}

/** What a detection curve is drawn against: the generator's strength, or the ratio read there. */
export type CurveAxis = 'strength' | 'observed';

const axisValue = (c: CaseRecord, axis: CurveAxis): number | undefined => {
  const value = axis === 'strength' ? c.expected.strength : c.observed?.ratio;
  return typeof value === 'number' && Number.isFinite(value) ? Math.min(value, 1e9) : undefined;
};

/**
 * Detection per level, per method, over single-bug cases: against the strength measured at the
 * target's precision (`strength`), or against the ratio the comparison reads at the bug's module
 * (`observed`). A value above the highest level counts in the highest.
 */
export function detectionCurve(
  cases: readonly CaseRecord[],
  method = 'ours',
  axis: CurveAxis = 'strength',
): CurvePoint[] {
  const measured = cases.filter(
    (c) =>
      !isControl(c) && (c.expected.bugs?.length ?? 1) === 1 && axisValue(c, axis) !== undefined,
  );
  return STRENGTH_LEVELS.map((level) => {
    const inLevel = measured.filter((c) => strengthLevel(axisValue(c, axis)!) === level);
    return {
      level,
      cases: inLevel.length,
      found: rate(inLevel, method, 'pass5'),
      top1: rate(inLevel, method, 'pass1'),
    };
  });
}

export interface ReliabilityBin {
  low: number;
  high: number;
  cases: number;
  /** Share of these alarms whose top suspect is the expected module. */
  correct: number;
  meanConfidence: number;
}

/** Top-suspect confidence against the share right, over every alarm (a control's is wrong). */
export function reliabilityBins(cases: readonly CaseRecord[], bins = 5): ReliabilityBin[] {
  // A control's alarm is a top suspect that is wrong.
  const alarms = cases.filter((c) => c.ours.alarm && typeof c.ours.confidence === 'number');
  return Array.from({ length: bins }, (_, i) => {
    const low = i / bins;
    const high = (i + 1) / bins;
    const inBin = alarms.filter((c) => {
      const confidence = c.ours.confidence!;
      return confidence >= low && (confidence < high || (i === bins - 1 && confidence <= high));
    });
    const mean = inBin.reduce((sum, c) => sum + c.ours.confidence!, 0) / (inBin.length || 1);
    return {
      low,
      high,
      cases: inBin.length,
      correct: rate(inBin, 'ours', 'pass1'),
      meanConfidence: inBin.length ? mean : 0,
    };
  });
}

/** Expected calibration error: the bins' |correct − confidence| weighted by their share. */
export function calibrationError(bins: readonly ReliabilityBin[]): number {
  const total = bins.reduce((sum, b) => sum + b.cases, 0);
  if (total === 0) return 0;
  return bins.reduce(
    (sum, b) => sum + (b.cases / total) * Math.abs(b.correct - b.meanConfidence),
    0,
  );
}

/** Alarms by the evidence of the top suspect: how many, how many right, the confidence given. */
export function evidenceRecord(
  cases: readonly CaseRecord[],
): { evidence: Evidence; alarms: number; right: number; meanConfidence: number }[] {
  const groups = new Map<Evidence, CaseRecord[]>();
  for (const c of cases) {
    if (!c.ours.alarm || !c.ours.evidence) continue;
    groups.set(c.ours.evidence, [...(groups.get(c.ours.evidence) ?? []), c]);
  }
  return [...groups].map(([evidence, alarms]) => ({
    evidence,
    alarms: alarms.length,
    right: alarms.filter((c) => c.ours.pass1).length,
    meanConfidence: alarms.reduce((sum, c) => sum + (c.ours.confidence ?? 0), 0) / alarms.length,
  }));
}
