import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import {
  computeTotals,
  runAccuracyBenchmark,
  scoreOutcome,
  type CaseRecord,
} from '../../native-bridge/bench/accuracy';
import {
  firstOverTolerance,
  largestError,
  rateOfChange,
} from '../../native-bridge/bench/baselines';
import type { SeriesPoint } from '../../native-bridge/diagnosis/result';
import { assertClose } from '../support/numbers';

const point = (module: string, relativeL2Error: number, toleranceViolations = 0): SeriesPoint =>
  ({ module, relativeL2Error, toleranceViolations }) as SeriesPoint;

describe('baselines', () => {
  const series = [point('a', 0), point('b', 1e-6, 3), point('c', 1e-2, 40), point('d', 5e-2, 60)];

  it('first over atol/rtol: modules in execution order from the first violation', () => {
    assert.deepEqual(firstOverTolerance(series), { alarm: true, ranking: ['b', 'c', 'd'] });
    assert.equal(firstOverTolerance([point('a', 0)]).alarm, false);
  });

  it('largest error: modules by relative error, alarm on output inconsistency', () => {
    assert.deepEqual(largestError(series), { alarm: true, ranking: ['d', 'c', 'b', 'a'] });
    assert.equal(largestError([point('a', 1e-4)]).alarm, false);
  });

  it('rate of change: the largest relative increase first', () => {
    // b: (1e-6 − 0)/1e-7 = 10; c: (1e-2 − 1e-6)/(1e-6 + 1e-7) ≈ 9090; d: (4e-2)/(1e-2) ≈ 4
    assert.deepEqual(rateOfChange(series).ranking, ['c', 'b', 'd', 'a']);
  });
});

describe('scoring', () => {
  const expected = { module: 'm2', source: { file: 'f.py', line: 7 } };

  it('scores pass@1, pass@5 and the line of a bug case', () => {
    const hit = scoreOutcome(expected, {
      alarm: true,
      top: ['m2', 'm3'],
      line: { file: 'f.py', line: 7 },
    });
    assert.deepEqual(
      [hit.pass1, hit.pass5, hit.lineHit, hit.falseAlarm],
      [true, true, true, false],
    );
    const second = scoreOutcome(expected, {
      alarm: true,
      top: ['m1', 'm2'],
      line: { file: 'f.py', line: 7 },
    });
    assert.deepEqual([second.pass1, second.pass5, second.lineHit], [false, true, true]);
    const silent = scoreOutcome(expected, { alarm: false, top: ['m2'], line: null });
    assert.deepEqual([silent.pass1, silent.pass5], [false, false]);
  });

  it('scores a control by its false alarm only', () => {
    const alarm = scoreOutcome({ module: null }, { alarm: true, top: ['x'], line: null });
    assert.deepEqual([alarm.pass1, alarm.falseAlarm], [false, true]);
  });

  it('computes totals from the cases', () => {
    const record = (
      id: string,
      module: string | null,
      pass1: boolean,
      falseAlarm: boolean,
    ): CaseRecord => {
      const outcome = {
        alarm: true,
        top: [],
        line: null,
        pass1,
        pass5: pass1,
        lineHit: pass1,
        falseAlarm,
      };
      return {
        id,
        cause: null,
        expected: { module },
        ours: outcome,
        baselines: { other: { ...outcome, pass1: false } },
        ms: 0,
      };
    };
    const totals = computeTotals([
      record('a', 'm', true, false),
      record('b', 'm', false, false),
      record('c', 'm', true, false),
      record('d', null, false, true),
    ]);
    assertClose(totals.ours!.pass1, 2 / 3);
    assert.equal(totals.ours!.falseAlarms, 1);
    assert.equal(totals.other!.pass1, 0);
    assert.deepEqual([totals.ours!.bugCases, totals.ours!.controls], [3, 1]);
  });
});

describe('the accuracy harness on real cases', () => {
  it('runs a bug case and a control through the pipeline and the baselines', async () => {
    const cases = path.resolve('samples/benchmark/cases');
    const report = await runAccuracyBenchmark([
      path.join(cases, 'rope-gptj-pairing'),
      path.join(cases, 'control-tp-allreduce'),
    ]);
    const [bug, control] = report.cases;
    assert.equal(bug!.ours.top[0], 'model.layers.2.self_attn');
    assert.equal(bug!.ours.pass1, true);
    assert.equal(control!.ours.falseAlarm, false);
    assert.deepEqual(Object.keys(bug!.baselines).sort(), [
      'first-over-atol-rtol',
      'largest-error',
      'rate-of-change',
    ]);
    // Totals are computed from exactly these cases.
    assert.deepEqual(report.totals, computeTotals(report.cases));
    assert.equal(report.totals.ours!.bugCases, 1);
    assert.equal(report.totals.ours!.controls, 1);
  });
});
