import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { loadDiagnosis } from '../diagnosis/capturedConfig';
import type { DiagnosisResult, SeriesPoint } from '../diagnosis/result';
import { diagnose } from '../diagnosis/diagnose';
import { describeCause } from '../errors';
import { evidenceOf, type Evidence } from '../localize/suspects';
import { readJsonFile } from '../jsonFile';
import { BASELINES } from './baselines';

/** A case's expected.json (the fields after `module` are labels for the tables). */
export interface ExpectedOutcome {
  /** The first module whose computation is wrong, as the run names it; null for a control. */
  module: string | null;
  source?: { file: string; line: number };
  cause?: string | null;
  split?: string;
  family?: string;
  runKind?: string;
  precision?: string;
  lowPrecisionReference?: boolean;
  position?: string | null;
  /** The bug's measured strength at its module (error over the clean target's), when defined. */
  strength?: number | null;
  bugs?: { bug: string; site: string; position?: string; strength?: number | null }[];
  control?: string | null;
  note?: string;
}

/** What one method said on one case. */
export interface MethodOutcome {
  alarm: boolean;
  /** Up to five modules, best first. */
  top: string[];
  /** Ours only: the top suspect's confidence. */
  confidence?: number;
  /** Ours only: the bar the top suspect passed (localize/suspects evidenceOf). */
  evidence?: Evidence;
}

export interface CaseScore {
  pass1: boolean;
  pass5: boolean;
  falseAlarm: boolean;
}

export type ScoredOutcome = MethodOutcome & CaseScore;

export interface CaseRecord {
  id: string;
  expected: ExpectedOutcome;
  ours: ScoredOutcome;
  baselines: Record<string, ScoredOutcome>;
  /** Set when the diagnosis failed: the case then scores as a miss, or as an alarm for a control. */
  error?: string;
  /**
   * What the comparison reads at the expected module (its largest ratio, and the largest ratio it
   * reads there), whatever the localization makes of it; absent for controls and when the module
   * has no value in the series.
   */
  observed?: { ratio: number; inputRatio: number };
  ms: number;
}

const withObserved = (observed: CaseRecord['observed']) => (observed ? { observed } : {});

/** The expected module's point with the largest ratio, as the comparison read it. */
export function observedAt(result: DiagnosisResult, module: string | null): CaseRecord['observed'] {
  let best: CaseRecord['observed'];
  for (const point of result.series) {
    if (point.module !== module || !(point.ratio > (best?.ratio ?? -1))) continue;
    best = { ratio: point.ratio, inputRatio: point.inputRatio };
  }
  return best;
}

/** pass@k: the expected module among the first k of an alarm; a control scores only false alarms. */
export function scoreOutcome(expected: ExpectedOutcome, outcome: MethodOutcome): ScoredOutcome {
  if (expected.module === null) {
    return { ...outcome, pass1: false, pass5: false, falseAlarm: outcome.alarm };
  }
  const found = outcome.alarm ? outcome.top : [];
  return {
    ...outcome,
    pass1: found[0] === expected.module,
    pass5: found.slice(0, 5).includes(expected.module),
    falseAlarm: false,
  };
}

/** Our verdict: an alarm is any suspect; the ranking is the suspects'. */
export function oursOf(result: DiagnosisResult): MethodOutcome {
  const top = result.suspects[0];
  return {
    alarm: result.suspects.length > 0,
    top: result.suspects.slice(0, 5).map((s) => s.module),
    ...(top ? { confidence: top.confidence, evidence: evidenceOf(top) } : {}),
  };
}

/** What a case's comparison read at each module output, for studying thresholds offline. */
export interface CaseSeries {
  id: string;
  expected: ExpectedOutcome;
  noiseSource: DiagnosisResult['noise']['source'];
  points: Pick<
    SeriesPoint,
    | 'index'
    | 'module'
    | 'key'
    | 'op'
    | 'ratio'
    | 'inputRatio'
    | 'inputIndex'
    | 'noiseSource'
    | 'noiseDof'
    | 'ownRatio'
  >[];
  suspects: { module: string; ratio: number; ownJump: number; confidence: number }[];
}

export function caseSeries(
  id: string,
  expected: ExpectedOutcome,
  result: DiagnosisResult,
): CaseSeries {
  return {
    id,
    expected,
    noiseSource: result.noise.source,
    points: result.series.map(
      ({
        index,
        module,
        key,
        op,
        ratio,
        inputRatio,
        inputIndex,
        noiseSource,
        noiseDof,
        ownRatio,
      }) => ({
        index,
        module,
        key,
        op,
        ratio,
        inputRatio,
        ...(inputIndex === undefined ? {} : { inputIndex }),
        noiseSource,
        ...(noiseDof === undefined ? {} : { noiseDof }),
        ...(ownRatio === undefined ? {} : { ownRatio }),
      }),
    ),
    suspects: result.suspects.map(({ module, ratio, ownJump, confidence }) => ({
      module,
      ratio,
      ownJump,
      confidence,
    })),
  };
}

/**
 * Runs one case through the user's pipeline, then every baseline on the same compared values;
 * with `seriesDir`, writes what the comparison read there as `<case>.json`.
 */
export async function runCase(caseDir: string, seriesDir?: string): Promise<CaseRecord> {
  const started = performance.now();
  const expected = (await readJsonFile(
    path.join(caseDir, 'expected.json'),
    'config',
  )) as ExpectedOutcome;
  const precision = expected.precision ?? 'float32';
  const id = path.basename(caseDir);
  let result: DiagnosisResult;
  try {
    result = await diagnose(await loadDiagnosis(path.join(caseDir, 'ekka.json')));
  } catch (error) {
    // A failed run is a failure of every method: none of them gets to answer.
    const failed = { alarm: expected.module === null, top: [] };
    const scored = scoreOutcome(expected, failed);
    return {
      id,
      expected,
      ours: scored,
      baselines: Object.fromEntries(Object.keys(BASELINES).map((name) => [name, scored])),
      error: describeCause(error),
      ms: performance.now() - started,
    };
  }
  if (seriesDir) {
    await fs.writeFile(
      path.join(seriesDir, `${id}.json`),
      JSON.stringify(caseSeries(id, expected, result)),
    );
  }
  const baselines: Record<string, ScoredOutcome> = {};
  for (const [name, baseline] of Object.entries(BASELINES)) {
    const verdict = baseline(result, precision);
    baselines[name] = scoreOutcome(expected, {
      alarm: verdict.alarm,
      top: verdict.ranking.slice(0, 5),
    });
  }
  return {
    id,
    expected,
    ours: scoreOutcome(expected, oursOf(result)),
    baselines,
    ...withObserved(observedAt(result, expected.module)),
    ms: performance.now() - started,
  };
}

/** Every case folder (ekka.json + expected.json) under `casesDir`, sorted by name. */
export async function listCases(casesDir: string): Promise<string[]> {
  const names = (await fs.readdir(casesDir)).sort();
  const cases: string[] = [];
  for (const name of names) {
    try {
      await fs.access(path.join(casesDir, name, 'expected.json'));
      cases.push(path.join(casesDir, name));
    } catch {
      // not a case folder
    }
  }
  return cases;
}

/** Runs every case, `jobs` at a time (a capture's Python process overlaps another case's work). */
export async function runAccuracyBenchmark(
  caseDirs: readonly string[],
  onCase?: (record: CaseRecord) => void,
  jobs = 1,
  seriesDir?: string,
): Promise<CaseRecord[]> {
  if (seriesDir) await fs.mkdir(seriesDir, { recursive: true });
  const cases: CaseRecord[] = new Array<CaseRecord>(caseDirs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < caseDirs.length) {
      const index = next++;
      cases[index] = await runCase(caseDirs[index]!, seriesDir);
      onCase?.(cases[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, worker));
  return cases;
}
