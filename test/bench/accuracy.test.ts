import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import {
  runAccuracyBenchmark,
  scoreOutcome,
  type CaseRecord,
} from '../../native-bridge/bench/accuracy';
import {
  calibrationError,
  computeTotals,
  detectionCurve,
  evidenceRecord,
  reliabilityBins,
  strengthLevel,
} from '../../native-bridge/bench/accuracySummary';
import { splitSection } from '../../native-bridge/bench/accuracyReport';
import { replaceBlock } from '../../native-bridge/bench/accuracyDocs';
import {
  firstOverDtypeTolerance,
  firstOverRatio,
  largestRatio,
  rateOfChangeAlongEdges,
} from '../../native-bridge/bench/baselines';
import type { DiagnosisResult, SeriesPoint } from '../../native-bridge/diagnosis/result';
import { assertClose } from '../support/numbers';

const point = (
  index: number,
  module: string,
  ratio: number,
  relativeL2Error: number,
  inputIndex?: number,
): SeriesPoint =>
  ({ index, module, ratio, relativeL2Error, inputRatio: 1, inputIndex }) as SeriesPoint;

const resultOf = (series: SeriesPoint[]): DiagnosisResult =>
  ({ series, thresholds: { ratio: 2 } }) as unknown as DiagnosisResult;

describe('baselines', () => {
  // b reads a; c reads a (a sibling branch), d reads b and c.
  const series = [
    point(0, 'a', 1, 1e-4),
    point(1, 'b', 1.2, 2e-3, 0),
    point(2, 'c', 8, 5e-3, 0),
    point(3, 'd', 9, 2e-2, 2),
  ];

  it('first over the dtype tolerance: float16 rtol 1e-3, bfloat16 1.6e-2', () => {
    assert.deepEqual(firstOverDtypeTolerance(resultOf(series), 'float16').ranking, ['b', 'c', 'd']);
    assert.deepEqual(firstOverDtypeTolerance(resultOf(series), 'bfloat16').ranking, ['d']);
    assert.equal(firstOverDtypeTolerance(resultOf([series[0]!]), 'float16').alarm, false);
  });

  it('first ratio over the threshold, in execution order', () => {
    assert.deepEqual(firstOverRatio(resultOf(series), 'float16'), {
      alarm: true,
      ranking: ['c', 'd'],
    });
  });

  it('largest ratio, alarm on the output ratio', () => {
    assert.deepEqual(largestRatio(resultOf(series), 'float16').ranking, ['d', 'c', 'b', 'a']);
    assert.equal(largestRatio(resultOf(series.slice(0, 2)), 'float16').alarm, false);
  });

  it('rate of change along the edges, not execution order', () => {
    // c: (8 − 1)/1 = 7 from a (its input), d: (9 − 8)/8 from c, b: 0.2 from a.
    assert.deepEqual(rateOfChangeAlongEdges(resultOf(series), 'float16').ranking.slice(0, 2), [
      'c',
      'b',
    ]);
  });
});

describe('scoring and summaries', () => {
  const expected = { module: 'm2' };

  it('scores pass@1 and pass@5 of a bug case and a silent run', () => {
    const hit = scoreOutcome(expected, { alarm: true, top: ['m2', 'm3'] });
    assert.deepEqual([hit.pass1, hit.pass5, hit.falseAlarm], [true, true, false]);
    const second = scoreOutcome(expected, { alarm: true, top: ['m1', 'm2'] });
    assert.deepEqual([second.pass1, second.pass5], [false, true]);
    const silent = scoreOutcome(expected, { alarm: false, top: ['m2'] });
    assert.deepEqual([silent.pass1, silent.pass5], [false, false]);
    const alarm = scoreOutcome({ module: null }, { alarm: true, top: ['x'] });
    assert.deepEqual([alarm.pass1, alarm.falseAlarm], [false, true]);
  });

  const record = (
    module: string | null,
    pass1: boolean,
    strength: number | null,
    confidence: number,
  ): CaseRecord => {
    const outcome = { alarm: true, top: [], confidence, pass1, pass5: pass1, falseAlarm: !module };
    return {
      id: 'x',
      expected: { module, strength },
      ours: outcome,
      baselines: { other: { ...outcome, pass1: false, pass5: false } },
      ms: 0,
    };
  };
  const cases = [
    record('m', true, 3.2, 0.9),
    record('m', false, 2.8, 0.5),
    record('m', true, 19, 0.95),
    record(null, false, null, 0.9),
  ];

  it('totals over bug cases and controls', () => {
    const totals = computeTotals(cases);
    assertClose(totals.ours!.pass1, 2 / 3);
    assert.equal(totals.ours!.falseAlarms, 1);
    assert.equal(totals.other!.pass1, 0);
    assert.deepEqual([totals.ours!.bugCases, totals.ours!.controls], [3, 1]);
  });

  it('bins measured strengths to the nearest level and draws the detection curve', () => {
    assert.deepEqual([strengthLevel(2.8), strengthLevel(1.7), strengthLevel(40)], [3, 1.5, 20]);
    const curve = detectionCurve(cases);
    assert.deepEqual(
      curve.filter((p) => p.cases > 0).map((p) => [p.level, p.cases, p.found]),
      [
        [3, 2, 0.5],
        [20, 1, 1],
      ],
    );
  });

  it('draws the same curve against the ratio read at the bug module', () => {
    const observed = [
      { ...cases[0]!, observed: { ratio: 1.2, inputRatio: 1 } },
      { ...cases[1]!, observed: { ratio: 9, inputRatio: 1 } },
      cases[2]!,
    ];
    assert.deepEqual(
      detectionCurve(observed, 'ours', 'observed')
        .filter((p) => p.cases > 0)
        .map((p) => [p.level, p.cases, p.found]),
      [
        [1.5, 1, 1],
        [10, 1, 0],
      ],
    );
  });

  it('reliability bins: share right against mean confidence, a control alarm counting wrong', () => {
    const bins = reliabilityBins(cases);
    assert.deepEqual(
      bins.map((b) => b.cases),
      [0, 0, 1, 0, 3],
    );
    assertClose(bins[4]!.correct, 2 / 3);
    assertClose(bins[4]!.meanConfidence, (0.9 + 0.95 + 0.9) / 3);
    // |0 − 0.5| · 1/4 + |2/3 − 0.9167| · 3/4
    assertClose(calibrationError(bins), 0.5 / 4 + (Math.abs(2 / 3 - 2.75 / 3) * 3) / 4);
  });

  it('counts alarms and right top suspects by evidence', () => {
    const withEvidence = cases.map((c, i) => ({
      ...c,
      ours: { ...c.ours, evidence: i < 2 ? ('local' as const) : ('faint local' as const) },
    }));
    assert.deepEqual(
      evidenceRecord(withEvidence).map((e) => [e.evidence, e.alarms, e.right]),
      [
        ['local', 2, 1],
        ['faint local', 2, 1],
      ],
    );
  });

  it('leaves out a table whose label no case carries, and says how many lack one', () => {
    const unlabelled = splitSection(cases);
    assert.doesNotMatch(unlabelled, /Per family|Per bug position|Two bugs|\?/);
    const labelled = [
      { ...cases[0]!, expected: { ...cases[0]!.expected, family: 'llama', runKind: 'pytorch' } },
      ...cases.slice(1),
    ];
    const section = splitSection(labelled);
    assert.match(
      section,
      /\*\*Per family × run kind\*\* \(ours; 3 cases without this label left out\)/,
    );
    assert.match(section, /\| llama × pytorch +\| 1 +\| 100\.0 % /);
  });

  it('writes the README figures between their markers only', () => {
    const text = 'a\n<!-- bench:accuracy -->\nold\n<!-- /bench:accuracy -->\nb';
    assert.equal(
      replaceBlock(text, 'new'),
      'a\n<!-- bench:accuracy -->\n\nnew\n\n<!-- /bench:accuracy -->\nb',
    );
    assert.throws(() => replaceBlock('no markers', 'new'), /no <!-- bench:accuracy -->/);
  });
});

describe('the accuracy harness on real cases', () => {
  it('runs an ONNX bug case, an ONNX control and a PyTorch capture through the pipeline', async () => {
    const cases = path.resolve('samples/benchmark/cases');
    const records = await runAccuracyBenchmark([
      path.join(cases, 'rope-gptj-pairing'),
      path.join(cases, 'control-tp-allreduce'),
      path.resolve('test/fixtures/hf-pytorch/llama-gelu'),
    ]);
    const [bug, control, captured] = records;
    assert.equal(bug!.ours.top[0], 'model.layers.2.self_attn');
    assert.equal(bug!.ours.pass1, true);
    assert.equal(control!.ours.falseAlarm, false);
    assert.equal(captured!.error, undefined);
    assert.equal(captured!.ours.top[0], 'model.layers.1.mlp.act_fn');
    assert.equal(captured!.ours.pass1, true);
    assert.ok(captured!.ours.confidence! > 0 && captured!.ours.confidence! <= 1);
    assert.deepEqual(Object.keys(bug!.baselines).sort(), [
      'first-over-dtype-tolerance',
      'first-ratio-over-threshold',
      'largest-ratio',
      'rate-of-change-on-edges',
    ]);
  });

  it('a case whose diagnosis fails scores against every method, with the error', async () => {
    const [failed] = await runAccuracyBenchmark([path.resolve('test/fixtures/bench-broken')]);
    assert.match(failed!.error!, /no-such-model\.onnx/);
    assert.equal(failed!.ours.pass5, false);
    assert.ok(Object.values(failed!.baselines).every((o) => !o.pass5));
  });
});
