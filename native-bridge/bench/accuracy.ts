import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../diagnosis/config';
import { relativeLocation, runDiagnosis } from '../diagnosis/diagnose';
import type { DiagnosisResult } from '../diagnosis/result';
import { readJsonFile } from '../jsonFile';
import { PythonSourceLocator } from '../source/pythonLocator';
import { BASELINES } from './baselines';

/** A case's expected.json. */
export interface ExpectedOutcome {
  module: string | null;
  source?: { file: string; line: number };
  cause?: string;
  subtle?: boolean;
  note?: string;
}

/** What one method said on one case. */
export interface MethodOutcome {
  alarm: boolean;
  /** Up to five modules, best first. */
  top: string[];
  /** The source line named for the top module. */
  line: { file: string; line: number } | null;
}

export interface CaseScore {
  pass1: boolean;
  pass5: boolean;
  lineHit: boolean;
  falseAlarm: boolean;
}

export type ScoredOutcome = MethodOutcome & CaseScore;

export interface CaseRecord {
  id: string;
  cause: string | null;
  expected: ExpectedOutcome;
  ours: ScoredOutcome;
  baselines: Record<string, ScoredOutcome>;
  ms: number;
}

export interface MethodTotals {
  pass1: number;
  pass5: number;
  lineHit: number;
  falseAlarms: number;
  bugCases: number;
  controls: number;
}

export interface AccuracyReport {
  cases: CaseRecord[];
  totals: Record<string, MethodTotals>;
}

/** pass@k: the expected module among the first k of an alarm; a control scores only false alarms. */
export function scoreOutcome(expected: ExpectedOutcome, outcome: MethodOutcome): ScoredOutcome {
  if (expected.module === null) {
    return { ...outcome, pass1: false, pass5: false, lineHit: false, falseAlarm: outcome.alarm };
  }
  const found = outcome.alarm ? outcome.top : [];
  return {
    ...outcome,
    pass1: found[0] === expected.module,
    pass5: found.slice(0, 5).includes(expected.module),
    lineHit:
      outcome.alarm &&
      outcome.line !== null &&
      outcome.line.file === expected.source?.file &&
      outcome.line.line === expected.source.line,
    falseAlarm: false,
  };
}

/** Rates per method over the cases: pass@1, pass@5 and line hits over bug cases, alarms over controls. */
export function computeTotals(cases: readonly CaseRecord[]): Record<string, MethodTotals> {
  const methods = ['ours', ...Object.keys(cases[0]?.baselines ?? {})];
  const bugs = cases.filter((c) => c.expected.module !== null);
  const controls = cases.filter((c) => c.expected.module === null);
  const rate = (list: readonly CaseRecord[], method: string, field: keyof CaseScore) =>
    list.length === 0
      ? 0
      : list.filter((c) => (method === 'ours' ? c.ours : c.baselines[method]!)[field]).length /
        list.length;
  return Object.fromEntries(
    methods.map((method) => [
      method,
      {
        pass1: rate(bugs, method, 'pass1'),
        pass5: rate(bugs, method, 'pass5'),
        lineHit: rate(bugs, method, 'lineHit'),
        falseAlarms: rate(controls, method, 'falseAlarm'),
        bugCases: bugs.length,
        controls: controls.length,
      },
    ]),
  );
}

/** Runs one case through the user's pipeline, then every baseline on the same module outputs. */
export async function runCase(caseDir: string): Promise<CaseRecord> {
  const started = performance.now();
  const expected = (await readJsonFile(
    path.join(caseDir, 'expected.json'),
    'config',
  )) as ExpectedOutcome;
  const config = await loadConfig(path.join(caseDir, 'ekka.json'));
  const result: DiagnosisResult = await runDiagnosis(config);
  const ours: MethodOutcome = {
    alarm: result.suspects.length > 0,
    top: result.suspects.slice(0, 5).map((s) => s.module),
    line: result.suspects[0]?.source
      ? { file: result.suspects[0].source.file, line: result.suspects[0].source.line }
      : null,
  };
  const verdicts = Object.entries(BASELINES).map(
    ([name, baseline]) => [name, baseline(result.series)] as const,
  );
  // Baselines name modules only; their lines come from the same locator, for a fair line score.
  const locator = config.source ? await PythonSourceLocator.create(config.source) : undefined;
  const baselines: Record<string, ScoredOutcome> = {};
  try {
    for (const [name, verdict] of verdicts) {
      const top = verdict.ranking.slice(0, 5);
      const located = top[0] !== undefined ? await locator?.locate(top[0]) : undefined;
      const line = located ? relativeLocation(located, config.baseDir) : undefined;
      baselines[name] = scoreOutcome(expected, {
        alarm: verdict.alarm,
        top,
        line: line ? { file: line.file, line: line.line } : null,
      });
    }
  } finally {
    locator?.dispose();
  }
  return {
    id: path.basename(caseDir),
    cause: expected.cause ?? null,
    expected,
    ours: scoreOutcome(expected, ours),
    baselines,
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

export async function runAccuracyBenchmark(
  caseDirs: readonly string[],
  onCase?: (record: CaseRecord) => void,
): Promise<AccuracyReport> {
  const cases: CaseRecord[] = [];
  for (const dir of caseDirs) {
    const record = await runCase(dir);
    cases.push(record);
    onCase?.(record);
  }
  return { cases, totals: computeTotals(cases) };
}
