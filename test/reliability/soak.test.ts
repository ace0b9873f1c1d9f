import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { runSoak } from '../../native-bridge/bench/soak';

const BRIDGE = path.resolve('dist/bridge.js');
const ROPE_CASE = path.resolve('samples/tiny-llama/cases/rope-interleaved/ekka.json');

// A short soak; `npm run bench:soak` runs the 50-diagnosis one and writes bench-results/soak.json.
describe('soak: consecutive diagnoses in one bridge process', function () {
  this.timeout(180_000);

  it('10 diagnoses: no descriptors pile up and memory stays bounded', async function () {
    if (process.platform !== 'linux') this.skip(); // figures come from /proc
    assert.ok(existsSync(BRIDGE), 'dist/bridge.js is missing: run `npm run build`');
    const report = await runSoak({ configPath: ROPE_CASE, modulePath: BRIDGE, runs: 10 });
    assert.equal(report.bridgeStarts, 1, 'the bridge was restarted');
    assert.deepEqual(
      new Set(report.samples.map((s) => s.topSuspect)),
      new Set(['model.layers.2.self_attn']),
    );
    const { fds, threads, samples } = report;
    assert.ok(fds.last <= fds.first + 2, `descriptors grew from ${fds.first} to ${fds.last}`);
    assert.ok(
      threads.last <= threads.first + 2,
      `threads grew from ${threads.first} to ${threads.last}`,
    );
    // Runs 1-2 warm up (code, caches); after that garbage comes and goes, nothing should stay.
    const growth = samples[9]!.rssMb - samples[2]!.rssMb;
    assert.ok(growth < 30, `RSS grew ${growth.toFixed(1)} MB over runs 3..10`);
  });
});
