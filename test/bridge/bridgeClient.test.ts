import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { BridgeClient, BridgeError } from '../../extension/bridge/bridgeClient';
import type { SeriesPoint } from '../../native-bridge/diagnosis/result';
import { slowDiagnosis } from './slowModel';

const ROPE_CASE = path.resolve('samples/tiny-llama/cases/rope-interleaved/ekka.json');

function newClient(overrides: Partial<ConstructorParameters<typeof BridgeClient>[0]> = {}) {
  const log: string[] = [];
  const unexpected: string[] = [];
  const client = new BridgeClient({
    // The shipped bundle: a TypeScript loader would add a child process of its own.
    modulePath: path.resolve('dist/bridge.js'),
    log: (line) => log.push(line),
    onUnexpectedExit: (message) => unexpected.push(message),
    ...overrides,
  });
  return { client, log, unexpected };
}

/** A cancellation the test triggers, shaped like VS Code's CancellationToken. */
function cancellation() {
  const listeners: (() => void)[] = [];
  const token = {
    isCancellationRequested: false,
    onCancellationRequested: (listener: () => void) => {
      listeners.push(listener);
      return { dispose() {} };
    },
  };
  return {
    token,
    cancel: () => {
      token.isCancellationRequested = true;
      for (const listener of listeners) listener();
    },
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function childrenOf(pid: number): string {
  try {
    return execFileSync('ps', ['--ppid', String(pid), '-o', 'pid=,comm='], { encoding: 'utf8' });
  } catch {
    return ''; // ps exits 1 when there are none
  }
}

describe('bridge client against the real bridge process', function () {
  this.timeout(120_000);
  let slow: { partitioned: string; wholeGraph: string };
  before(async () => {
    const bundle = await fs.stat('dist/bridge.js').catch(() => undefined);
    const source = await fs.stat('native-bridge/bridge/main.ts');
    if (!bundle || bundle.mtimeMs < source.mtimeMs) execFileSync('node', ['esbuild.config.mjs']);
    slow = await slowDiagnosis();
  });

  it('streams one point per compared module before the result, and serves error maps as bytes', async () => {
    const { client } = newClient();
    try {
      const points: SeriesPoint[] = [];
      const delays: number[] = [];
      const result = await client.runDiagnosis(
        { runId: 'r1', configPath: ROPE_CASE },
        {
          onPoint: ({ point, comparedAt }) => {
            points.push(point);
            delays.push(Date.now() - comparedAt);
          },
        },
      );
      assert.equal(points.length, result.series.length);
      assert.equal(points.length, 66);
      assert.deepEqual(
        points.map((p) => p.ratio),
        result.series.map((p) => p.ratio),
      );
      // Each point carries the time it was compared, and none arrives before that.
      assert.ok(Math.min(...delays) >= 0, `delays ${Math.min(...delays)} ms`);
      const top = result.suspects[0]!;
      assert.equal(top.module, 'model.layers.2.self_attn');

      const map = await client.getErrorMap('r1', top.index);
      assert.ok(map);
      assert.ok(map.values instanceof Uint8Array, 'bytes, not a JSON array');
      assert.equal(map.values.byteLength, map.rows * map.cols * 4);
      const values = new Float32Array(
        map.values.buffer.slice(
          map.values.byteOffset,
          map.values.byteOffset + map.values.byteLength,
        ),
      );
      const point = result.series[top.index]!;
      assert.deepEqual(map.shape, point.shape);
      // The map's largest cell is the activation's max abs error (float32-rounded).
      const largest = Math.max(...values);
      assert.ok(Math.abs(largest - point.maxAbsError) <= 1e-6 * point.maxAbsError + 1e-12);
    } finally {
      await client.dispose();
    }
  });

  it('ignores a cancel that comes after the run finished', async () => {
    const { client } = newClient({ cancelGraceMs: 50 });
    try {
      const { token, cancel } = cancellation();
      await client.runDiagnosis({ runId: 'done', configPath: ROPE_CASE }, {}, token);
      const pid = client.pid!;
      cancel();
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok(isAlive(pid), 'the finished run’s process was killed by a late cancel');
    } finally {
      await client.dispose();
    }
  });

  it('refuses a config that reads files outside the workspace folder it was given', async () => {
    const { client } = newClient();
    try {
      await assert.rejects(
        client.runDiagnosis({
          runId: 'outside',
          configPath: ROPE_CASE,
          workspaceFolder: path.dirname(ROPE_CASE),
        }),
        (error: BridgeError) => {
          assert.equal(error.kind, 'config');
          assert.match(error.message, /reference\.model: .* is outside the workspace folder/);
          return true;
        },
      );
      const inside = await client.runDiagnosis({
        runId: 'inside',
        configPath: ROPE_CASE,
        workspaceFolder: path.resolve('samples/tiny-llama'),
      });
      assert.equal(inside.suspects[0]?.module, 'model.layers.2.self_attn');
    } finally {
      await client.dispose();
    }
  });

  it('locates a module’s source through the bridge', async () => {
    const { client } = newClient();
    try {
      const location = await client.locateModule(ROPE_CASE, 'model.layers.2.self_attn');
      assert.ok(location);
      assert.equal(path.basename(location.file), 'modeling_target.py');
      assert.equal(location.line, 18);
    } finally {
      await client.dispose();
    }
  });

  it('reports a bad config with its file name and keeps the same process', async () => {
    const { client } = newClient();
    try {
      await client.locateModule(ROPE_CASE, 'model');
      const pid = client.pid;
      await assert.rejects(
        client.runDiagnosis({ runId: 'bad', configPath: path.resolve('missing/ekka.json') }),
        (error: BridgeError) => {
          assert.equal(error.kind, 'config');
          assert.match(error.message, /missing\/ekka\.json: file not found/);
          return true;
        },
      );
      assert.equal(client.pid, pid);
      assert.equal(client.starts, 1);
    } finally {
      await client.dispose();
    }
  });

  it('survives a SIGKILL of the bridge mid-run: one clear message, and the next run works', async () => {
    const { client, unexpected } = newClient();
    try {
      let points = 0;
      const run = client.runDiagnosis(
        { runId: 'killed', configPath: slow.partitioned },
        {
          onPoint: () => {
            if (++points === 1) process.kill(client.pid!, 'SIGKILL');
          },
        },
      );
      await assert.rejects(run, (error: BridgeError) => {
        assert.equal(error.kind, 'bridge');
        assert.match(error.message, /was killed \(SIGKILL\).*restarts on the next run/);
        return true;
      });
      assert.equal(unexpected.length, 1);
      const result = await client.runDiagnosis({ runId: 'after', configPath: ROPE_CASE });
      assert.equal(result.suspects[0]?.module, 'model.layers.2.self_attn');
      assert.equal(client.starts, 2);
    } finally {
      await client.dispose();
    }
  });

  for (const mode of ['partitioned', 'wholeGraph'] as const) {
    it(`stops a ${mode} run within a second of cancel and leaves no child process`, async () => {
      const { client, unexpected } = newClient({
        // Whole-graph: a short grace, so the cancel lands inside the long native call.
        cancelGraceMs: mode === 'wholeGraph' ? 100 : 800,
      });
      try {
        await client.locateModule(ROPE_CASE, 'model'); // started and warm
        const pid = client.pid!;
        const { token, cancel } = cancellation();
        let cancelledAt = 0;
        let settled = false;
        let points = 0;
        let pointsAfterSettled = 0;
        const cancelNow = () => {
          if (cancelledAt) return;
          cancelledAt = Date.now();
          cancel();
        };
        const run = client.runDiagnosis(
          { runId: `cancel-${mode}`, configPath: slow[mode] },
          {
            onPoint: () => {
              if (settled) pointsAfterSettled++;
              // Partitioned: cancel mid-stream, between the segments' comparisons.
              if (++points === 20) cancelNow();
            },
            // Whole-graph: both sessions are open, the long native calls come next.
            onProgress: (message) => {
              if (mode === 'wholeGraph' && message.startsWith('target:')) cancelNow();
            },
          },
          token,
        );
        await assert.rejects(run, (error: BridgeError) => error.kind === 'cancelled');
        settled = true;
        if (mode === 'partitioned') assert.ok(points < 115, `all ${points} points came`);
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(pointsAfterSettled, 0, 'points after the run settled');
        assert.equal(childrenOf(pid), '');
        if (mode === 'partitioned') assert.ok(isAlive(pid), 'a run that stops keeps its process');
        else assert.ok(!isAlive(pid), 'a run stuck in native code loses its process');
        assert.deepEqual(unexpected, [], 'a cancel is not reported as a crash');
        const result = await client.runDiagnosis({ runId: 'next', configPath: ROPE_CASE });
        assert.equal(result.suspects[0]?.module, 'model.layers.2.self_attn');
      } finally {
        await client.dispose();
      }
    });
  }

  it('stops when idle and starts again on the next request', async () => {
    const { client } = newClient({ idleMs: 200 });
    try {
      await client.locateModule(ROPE_CASE, 'model');
      const pid = client.pid!;
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(client.pid, undefined);
      assert.ok(!isAlive(pid));
      await client.locateModule(ROPE_CASE, 'model');
      assert.equal(client.starts, 2);
    } finally {
      await client.dispose();
    }
  });

  it('refuses a bridge that speaks another protocol version', async () => {
    const { client } = newClient({
      modulePath: path.resolve('test/bridge/otherVersionBridge.ts'),
      execArgv: ['--import', 'tsx'],
    });
    try {
      await assert.rejects(
        client.locateModule(ROPE_CASE, 'model'),
        /speaks protocol 999.*reinstall/,
      );
    } finally {
      await client.dispose();
    }
  });
});
