import * as assert from 'node:assert/strict';
import { promises as fs, readdirSync } from 'node:fs';
import { execFile } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { loadDiagnosis } from '../../native-bridge/diagnosis/capturedConfig';
import { diagnose } from '../../native-bridge/diagnosis/diagnose';

const execFileAsync = promisify(execFile);
const CASES = path.resolve('samples/serving-llama/cases');
/** Debian's interpreter has torch (python3-torch); the one first on PATH may not. */
const PYTHON = process.env.EKKA_PYTHON || '/usr/bin/python3';

interface Expected {
  module: string | null;
  cause: string | null;
  source: { file: string; line: number } | null;
  step: 'prefill' | 'decode' | null;
}

describe('serving-style engine against the HF-style reference (real PyTorch captures)', function () {
  this.timeout(180_000);
  const ids = readdirSync(CASES);
  for (const id of ids.sort()) {
    const dir = path.join(CASES, id);
    it(`${id}: ${id.startsWith('control') ? 'no suspect at float32 nor bfloat16' : 'the planted module ranks first'}`, async () => {
      const expected = JSON.parse(
        await fs.readFile(path.join(dir, 'expected.json'), 'utf8'),
      ) as Expected;
      const configs = (await fs.readdir(dir)).filter((f) => /^ekka.*\.json$/.test(f));
      assert.ok(configs.length > 0);
      for (const file of configs) {
        const config = await loadDiagnosis(path.join(dir, file));
        const result = await diagnose(config, {}, undefined, { python: PYTHON });
        assert.ok(result.mapping, 'a mapping report');
        assert.ok(result.series.length >= 100, `${result.series.length} pairs compared`);
        if (expected.module === null) {
          assert.deepEqual(result.suspects, [], `${file}: ${result.suspects[0]?.module}`);
          assert.ok(Math.max(...result.series.map((p) => p.ratio)) < result.thresholds.ratio);
          continue;
        }
        const top = result.suspects[0];
        assert.equal(top?.module, expected.module, `${file}: top suspect`);
        assert.deepEqual(
          top.source && { file: top.source.file, line: top.source.line },
          expected.source,
        );
        const point = result.series[top.index]!;
        assert.equal(point.call, expected.step === 'decode' ? 2 : 1, 'the step that shows the bug');
        if (expected.step === 'decode') {
          assert.ok(
            result.series.filter((p) => p.call === 1).every((p) => p.ratio < 2),
            'prefill is clean',
          );
        }
        assert.equal(result.noise.source, 'low-precision-reference');
      }
    });
  }
});

describe('a capture dumped on one machine, diagnosed on another', function () {
  this.timeout(180_000);
  it('diagnoses the qkv case from dumps written by the capture helper', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-dumps-'));
    try {
      const helper = path.resolve('native-bridge/python/ekka_capture.py');
      const dump = (factory: string, dir: string, ...extra: string[]) =>
        execFileAsync(PYTHON, [
          helper,
          '--factory',
          factory,
          '--dump',
          path.join(root, dir),
          ...extra,
        ]);
      const caseDir = path.join(CASES, 'qkv-kv-swapped');
      await dump(`${caseDir}/target.py:build`, 'target', '--dtype', 'bfloat16');
      await dump(`${caseDir}/../../reference.py:build`, 'reference', '--inputs');
      await dump(
        `${caseDir}/../../reference.py:build`,
        'reference-bf16',
        '--inputs',
        '--dtype',
        'bfloat16',
      );
      const config = path.join(root, 'ekka.json');
      await fs.writeFile(
        config,
        JSON.stringify({
          target: { kind: 'dump', dump: 'target' },
          reference: { kind: 'dump', dump: 'reference' },
          referenceLowPrecision: { kind: 'dump', dump: 'reference-bf16' },
          mapping: {
            preset: 'llama',
            targetCallTokens: [
              [0, 16],
              [16, 17],
            ],
          },
        }),
      );
      const result = await diagnose(await loadDiagnosis(config));
      assert.equal(result.runs.target.framework, 'dump');
      assert.equal(result.suspects[0]?.module, 'model.layers.1.self_attn.qkv_proj');
      assert.equal(result.suspects[0]?.source?.line, 28);
      assert.equal(result.noise.source, 'low-precision-reference');
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

describe('a PyTorch engine against an ONNX export of the reference', function () {
  this.timeout(180_000);
  const dir = path.resolve('samples/serving-llama/onnx-reference');
  it('pairs ONNX node scopes with module paths and finds the planted module', async () => {
    const result = await diagnose(
      await loadDiagnosis(path.join(dir, 'qkv-kv-swapped.json')),
      {},
      undefined,
      {
        python: PYTHON,
      },
    );
    assert.equal(result.runs.reference.framework, 'onnxruntime');
    assert.ok(result.series.length >= 50, `${result.series.length} pairs`);
    assert.equal(result.suspects[0]?.module, 'model.layers.1.self_attn.qkv_proj');
    assert.equal(result.suspects[0]?.source?.line, 28);
    // The decode step has no token window against a prefill-only export: listed, not dropped.
    const decode = result.unmatched.filter((u) => /call 2 has no token window/.test(u.reason));
    assert.ok(decode.length > 0);
  });

  it('stays quiet for the correct engine', async () => {
    const result = await diagnose(
      await loadDiagnosis(path.join(dir, 'control.json')),
      {},
      undefined,
      {
        python: PYTHON,
      },
    );
    assert.deepEqual(result.suspects, []);
    assert.ok(Math.max(...result.series.map((p) => p.ratio)) < 1, 'every pair within fp32 noise');
  });
});
