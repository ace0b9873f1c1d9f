import * as assert from 'node:assert/strict';
import { promises as fs, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../../native-bridge/diagnosis/config';
import { diagnose } from '../../native-bridge/diagnosis/diagnose';
import type { DiagnosisResult, SeriesPoint } from '../../native-bridge/diagnosis/result';

const CASES = path.resolve('samples/tiny-llama/cases');

interface Expected {
  module: string | null;
  source?: { file: string; line: number };
  cause?: string;
  /** The `__global__` kernel holding the bug, for cases whose module runs a custom kernel. */
  kernel?: { file: string; line: number; symbol: string };
}

/** The same diagnosis with every run captured as one whole graph. */
async function wholeGraph(id: string): Promise<DiagnosisResult> {
  const config = await loadConfig(path.join(CASES, id, 'ekka.json'));
  for (const run of [config.target, config.reference, config.referenceLowPrecision]) {
    if (run) run.capture = 'whole-graph';
  }
  return diagnose(config);
}

describe('sample diagnoses (ground truth in each case’s expected.json)', () => {
  const caseIds = readdirSync(CASES)
    .filter((id) => !id.startsWith('.'))
    .sort();

  it('has at least three planted bugs and one control', async () => {
    const expectations = await Promise.all(
      caseIds.map(
        async (id) =>
          JSON.parse(await fs.readFile(path.join(CASES, id, 'expected.json'), 'utf8')) as Expected,
      ),
    );
    assert.ok(expectations.filter((e) => e.module !== null).length >= 3);
    assert.ok(expectations.filter((e) => e.module === null).length >= 1);
  });

  for (const id of caseIds) {
    describe(id, () => {
      let expected: Expected;
      let result: DiagnosisResult;
      const streamed: SeriesPoint[] = [];

      before(async () => {
        expected = JSON.parse(
          await fs.readFile(path.join(CASES, id, 'expected.json'), 'utf8'),
        ) as Expected;
        const config = await loadConfig(path.join(CASES, id, 'ekka.json'));
        result = await diagnose(config, { point: (p) => streamed.push(p) });
      });

      it('streams every module output before the result, in order', () => {
        assert.ok(result.series.length > 50, `only ${result.series.length} points`);
        assert.deepEqual(streamed, result.series);
        assert.deepEqual(
          streamed.map((p) => p.index),
          streamed.map((_, i) => i),
        );
      });

      it('pairs every module output of both runs', () => {
        assert.deepEqual(result.unmatched, []);
      });

      if (id.startsWith('control')) {
        it('reports no suspect above threshold', () => {
          assert.equal(result.changePoint, null);
          assert.deepEqual(result.suspects, []);
          // Anything above threshold must have been set aside as an isolated spike.
          const elevated = result.series.filter((p) => p.ratio >= result.thresholds.ratio);
          for (const p of elevated)
            assert.ok(result.spikes.includes(p.index), `${p.key}: ${p.ratio}`);
        });

        it('stays quiet with whole-graph capture too', async () => {
          assert.deepEqual((await wholeGraph(id)).suspects, []);
        });
        return;
      }

      it('ranks the planted module first', () => {
        assert.ok(result.changePoint, 'no change point');
        assert.equal(result.suspects[0]?.module, expected.module);
        assert.ok(
          result.suspects[0].confidence > 0.5,
          `confidence ${result.suspects[0].confidence}`,
        );
        assert.ok(result.suspects[0].ratio >= result.thresholds.ratio);
      });

      it('reproduces the error on the reference’s inputs (own error, not inherited)', () => {
        assert.ok(
          result.suspects[0]!.ownRatio! >= result.thresholds.ratio,
          `${result.suspects[0]!.ownRatio}`,
        );
      });

      it('names the planted source line', () => {
        assert.deepEqual(
          { file: result.suspects[0]?.source?.file, line: result.suspects[0]?.source?.line },
          expected.source,
        );
        // The kernel: the one the op's host function launches, else the op's own location.
        const kernel = result.suspects[0]?.kernel;
        const launched = kernel?.launches?.[0] ?? kernel;
        assert.deepEqual(
          launched && { file: launched.file, line: launched.line, symbol: launched.symbol },
          expected.kernel,
        );
      });

      it('localizes the same module with whole-graph capture', async () => {
        const whole = await wholeGraph(id);
        assert.equal(whole.runs.target.capture, 'whole-graph');
        assert.equal(result.runs.target.capture, 'partitioned');
        assert.equal(result.runs.target.segments, 4);
        assert.equal(result.timings.lockstep, true);
        assert.equal(whole.suspects[0]?.module, result.suspects[0]?.module);
      });

      it('keeps modules before the bug at noise level', () => {
        const first = result.series.findIndex((p) => p.module === expected.module);
        const before = result.series.slice(0, Math.min(first, result.changePoint!.index));
        for (const p of before)
          assert.ok(p.ratio < result.thresholds.ratio, `${p.key}: ${p.ratio}`);
      });
    });
  }
});
