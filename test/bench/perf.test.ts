import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runPerfBenchmark } from '../../native-bridge/bench/perf';
import { formatPerfReport } from '../../native-bridge/bench/perfMain';

describe('the performance harness on a tiny model', () => {
  it('measures every figure, in both capture modes, and finds the planted layer', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-perf-'));
    const shape = { hidden: 64, intermediate: 176, heads: 2, layers: 2, vocab: 128, sequence: 16 };
    const report = await runPerfBenchmark({
      root,
      shape,
      depths: [2],
      wholeGraphUpTo: 2,
      compareMegabytes: 4,
    });
    const [depth] = report.depths;
    const positive = (label: string, value: unknown) =>
      assert.ok(Number.isFinite(Number(value)) && Number(value) > 0, `${label}: ${String(value)}`);
    positive('comparison GB/s', report.comparison.gbPerSecond);
    for (const [label, value] of Object.entries({
      plainTargetMs: depth!.plainTargetMs,
      plainReferenceMs: depth!.plainReferenceMs,
      plainPeakRssMb: depth!.plainPeakRssMb,
      partitionedMs: depth!.partitioned.totalMs,
      partitionedPeak: depth!.partitioned.peakRssMb,
      wholeMs: depth!.wholeGraph?.totalMs,
      wholePeak: depth!.wholeGraph?.peakRssMb,
      activationsMb: depth!.activations.totalMb,
      largestSegmentMb: depth!.activations.largestSegmentMb,
      firstResultMs: depth!.partitioned.firstResultMs,
      timeRatio: depth!.timeRatio,
    })) {
      positive(label, value);
    }
    assert.ok(Number(depth!.partitioned.firstResultAfterSegmentMs) >= 0);
    // Bug planted in layer floor(2 / 2) = 1 (ReLU for SiLU); both modes find it.
    assert.equal(depth!.partitioned.topSuspect, 'model.layers.1.mlp.act_fn');
    assert.equal(depth!.wholeGraph?.topSuspect, 'model.layers.1.mlp.act_fn');
    assert.equal(depth!.partitioned.capture, 'partitioned');
    assert.equal(depth!.partitioned.segments, 2);
    assert.equal(depth!.wholeGraph?.capture, 'whole-graph');
    assert.match(
      formatPerfReport(report),
      /targets:\n {2}comparison ≥ 1 GB\/s per core: (met|not met)/,
    );
  });
});
