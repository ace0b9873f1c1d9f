import type { CaseRecord } from './accuracy';
import {
  calibrationError,
  computeTotals,
  type CurveAxis,
  detectionCurve,
  evidenceRecord,
  groupBy,
  methodsOf,
  reliabilityBins,
} from './accuracySummary';

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** pass@1 / pass@5 / false alarms per method. */
export function methodTable(cases: readonly CaseRecord[]): string {
  const totals = computeTotals(cases);
  return table(
    ['method', 'pass@1', 'pass@5', 'false alarms'],
    methodsOf(cases).map((method) => {
      const t = totals[method]!;
      return [
        method,
        pct(t.pass1),
        pct(t.pass5),
        `${pct(t.falseAlarms)} (${Math.round(t.falseAlarms * t.controls)}/${t.controls})`,
      ];
    }),
  );
}

/** Ours per group label: bug cases, pass@1, pass@5, controls, false alarms. */
export function groupTable(
  cases: readonly CaseRecord[],
  title: string,
  label: (c: CaseRecord) => string,
): string {
  const rows = [...groupBy(cases, label)].map(([name, group]) => {
    const t = computeTotals(group).ours!;
    return [
      name,
      String(t.bugCases),
      t.bugCases ? pct(t.pass1) : '–',
      t.bugCases ? pct(t.pass5) : '–',
      String(t.controls),
      t.controls ? String(Math.round(t.falseAlarms * t.controls)) : '–',
    ];
  });
  return table([title, 'bug cases', 'pass@1', 'pass@5', 'controls', 'false alarms'], rows);
}

export function curveTable(cases: readonly CaseRecord[], axis: CurveAxis = 'strength'): string {
  const methods = methodsOf(cases);
  const curves = methods.map((m) => detectionCurve(cases, m, axis));
  const rows = curves[0]!.map((point, i) => [
    `${point.level} ×`,
    String(point.cases),
    ...curves.map((curve) => (curve[i]!.cases ? pct(curve[i]!.found) : '–')),
    point.cases ? pct(point.top1) : '–',
  ]);
  return table(
    [
      axis === 'strength' ? 'strength' : 'ratio read',
      'cases',
      ...methods.map((m) => `${m} found (top 5)`),
      'ours top 1',
    ],
    rows,
  );
}

export function reliabilityTable(cases: readonly CaseRecord[]): string {
  const bins = reliabilityBins(cases);
  const rows = bins.map((b) => [
    `${b.low.toFixed(1)}–${b.high.toFixed(1)}`,
    String(b.cases),
    b.cases ? b.meanConfidence.toFixed(2) : '–',
    b.cases ? pct(b.correct) : '–',
  ]);
  return `${table(['confidence', 'alarms', 'mean confidence', 'top suspect right'], rows)}\n\nExpected calibration error: ${calibrationError(bins).toFixed(3)}.`;
}

/** Alarms by the top suspect's evidence: the counts the confidence is read from (dev split). */
export function evidenceTable(cases: readonly CaseRecord[]): string {
  const rows = evidenceRecord(cases).map((e) => [
    e.evidence,
    String(e.alarms),
    String(e.right),
    pct(e.right / e.alarms),
    e.meanConfidence.toFixed(2),
  ]);
  return table(['evidence', 'alarms', 'top suspect right', 'share', 'mean confidence'], rows);
}

/** The misses of ours, one line each, so a reader can open the case. */
export function missList(cases: readonly CaseRecord[]): string {
  const misses = cases.filter((c) =>
    c.expected.module === null ? c.ours.falseAlarm : !c.ours.pass1,
  );
  if (misses.length === 0) return 'None.';
  return misses
    .map((c) => {
      const said = c.error
        ? `error: ${c.error.split('\n')[0]!.slice(0, 160)}`
        : c.ours.alarm
          ? `named ${c.ours.top.map((m) => `\`${m || '(root)'}\``).join(', ')}`
          : 'no alarm';
      const wanted = c.expected.module === null ? 'control' : `expected \`${c.expected.module}\``;
      const strength =
        typeof c.expected.strength === 'number'
          ? `, strength ${c.expected.strength.toFixed(2)}`
          : '';
      return `- \`${c.id}\`: ${wanted}${strength}; ${said}`;
    })
    .join('\n');
}

const kindOf = (c: CaseRecord) =>
  c.expected.family && c.expected.runKind
    ? `${c.expected.family} × ${c.expected.runKind}`
    : undefined;
const noiseOf = (c: CaseRecord) =>
  c.expected.precision === undefined
    ? undefined
    : c.expected.precision === 'float32'
      ? 'float32 target'
      : c.expected.lowPrecisionReference
        ? `${c.expected.precision}, low-precision reference`
        : `${c.expected.precision}, no low-precision reference`;

/** A titled table of the cases that carry the label; nothing when none does. */
function labelledTable(
  title: string,
  scope: string,
  cases: readonly CaseRecord[],
  column: string,
  label: (c: CaseRecord) => string | null | undefined,
): string[] {
  const labelled = cases.filter((c) => label(c) != null);
  if (labelled.length === 0) return [];
  const unlabelled = cases.length - labelled.length;
  const note = unlabelled ? `; ${unlabelled} cases without this label left out` : '';
  return [
    `**${title}** (${scope}${note}):`,
    '',
    groupTable(labelled, column, (c) => label(c)!),
    '',
  ];
}

/** Every table for one split; a table whose label no case carries is left out. */
export function splitSection(cases: readonly CaseRecord[]): string {
  const bugs = cases.filter((c) => c.expected.module !== null);
  const twoBugs = bugs.filter((c) => (c.expected.bugs?.length ?? 1) > 1);
  const measured = bugs.some((c) => typeof c.expected.strength === 'number');
  return [
    `${bugs.length} bug cases, ${cases.length - bugs.length} controls.`,
    '',
    methodTable(cases),
    '',
    ...labelledTable('Per family × run kind', 'ours', cases, 'family × run kind', kindOf),
    ...labelledTable('Per precision and noise yardstick', 'ours', cases, 'target', noiseOf),
    ...labelledTable(
      'Per bug position',
      'ours, bug cases',
      bugs,
      'position',
      (c) => c.expected.position,
    ),
    ...(measured
      ? [
          `**Detection against strength** (single-bug cases whose strength was measured at the target's precision; strength = the module's error over the clean target's):`,
          '',
          curveTable(cases),
          '',
        ]
      : []),
    `**Detection against the ratio read at the bug's module** (the same cases, by what the comparison measures there, nearest level; a bug the run kind's noise hides reads low whatever its strength in torch):`,
    '',
    curveTable(cases, 'observed'),
    '',
    ...(twoBugs.length
      ? [
          `**Two bugs** (${twoBugs.length} cases): the first in data order ranks first in ${
            twoBugs.filter((c) => c.ours.pass1).length
          }.`,
          '',
        ]
      : []),
    '**Reliability of the top suspect\u2019s confidence** (every alarm; a control\u2019s is wrong):',
    '',
    reliabilityTable(cases),
    '',
    '**Reliability by evidence** (what the confidence is read from: the dev split\u2019s counts, with one success and one failure added):',
    '',
    evidenceTable(cases),
    '',
    '**Cases ours gets wrong:**',
    '',
    missList(cases),
  ].join('\n');
}
