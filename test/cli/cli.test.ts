import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { DiagnosisResult } from '../../native-bridge/diagnosis/result';
import { scratchDir } from '../support/tinyOnnx';

const ROOT = path.resolve('.');
const BIN = path.join(ROOT, 'bin/ekka.js');
const SAMPLE = path.join(ROOT, 'samples/tiny-llama');
const ROPE = path.join(SAMPLE, 'cases/rope-interleaved');

function ekka(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** A clear error: non-zero exit, one "ekka: …" message, no stack trace. */
function assertCleanFailure(run: ReturnType<typeof ekka>, pattern: RegExp): void {
  assert.equal(run.status, 2, run.stderr);
  assert.match(run.stderr, /^ekka: /);
  assert.match(run.stderr, pattern);
  assert.doesNotMatch(run.stderr, /^\s+at /m, 'stack trace printed');
}

describe('ekka CLI', () => {
  let dir: string;
  before(async function () {
    if (!existsSync(path.join(ROOT, 'dist/cli.js'))) {
      throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)');
    }
    dir = await scratchDir();
  });

  it('diagnoses a sample, prints the suspect with its source line, writes the JSON result', async () => {
    const out = path.join(dir, 'rope.json');
    const run = ekka(['diagnose', path.join(ROPE, 'ekka.json'), '--json', out]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /Change point at #\d+: model\.layers\.2\.self_attn/);
    assert.match(
      run.stdout,
      /^1\s+model\.layers\.2\.self_attn\s.*modeling_target\.py:18 \(InterleavedRotaryAttention\)$/m,
    );
    // Printed paths share one base, the current directory: the file opens from the terminal.
    assert.ok(
      run.stdout.includes(' samples/tiny-llama/cases/rope-interleaved/modeling_target.py:18 '),
      run.stdout,
    );
    const result = JSON.parse(await fs.readFile(out, 'utf8')) as DiagnosisResult;
    const top = result.suspects[0]!;
    assert.equal(top.module, 'model.layers.2.self_attn');
    assert.equal(typeof top.op, 'string');
    assert.ok(top.ratio > 100 && top.confidence > 0.5);
    assert.deepEqual(
      { file: top.source?.file, line: top.source?.line },
      { file: 'modeling_target.py', line: 18 },
    );
    assert.ok(result.series.length > 50);
    assert.ok(
      result.series.every((p) => typeof p.ratio === 'number' && typeof p.module === 'string'),
    );
    // The modules after the change point are named as inherited, counted from the result.
    const inherited = result.series.filter(
      (p) => p.ratio >= 2 && p.inputRatio >= 2 && p.ratio / p.inputRatio < 2,
    );
    assert.ok(inherited.length > 10 && inherited.every((p) => p.index > 40));
    assert.ok(
      run.stdout.includes(
        `${inherited.length} module outputs above the threshold (#${inherited[0]!.index}–`,
      ),
      run.stdout,
    );
    assert.ok(!result.suspects.some((s) => inherited.some((p) => p.index === s.index)));
  });

  it('runs without a config from two ONNX files, an inputs file and source roots', async () => {
    const out = path.join(dir, 'flags.json');
    const run = ekka([
      'diagnose',
      '--target',
      path.join(SAMPLE, 'cases/final-norm-eps/target.onnx'),
      '--reference',
      path.join(SAMPLE, 'reference.onnx'),
      '--inputs',
      path.join(SAMPLE, 'input.json'),
      '--source-root',
      path.join(SAMPLE, 'cases/final-norm-eps'),
      '--source-root',
      SAMPLE,
      '--json',
      out,
    ]);
    assert.equal(run.status, 0, run.stderr);
    const result = JSON.parse(await fs.readFile(out, 'utf8')) as DiagnosisResult;
    assert.equal(result.suspects[0]!.module, 'model.norm');
    assert.deepEqual(
      result.suspects[0]!.source && {
        file: result.suspects[0]!.source.file,
        line: result.suspects[0]!.source.line,
      },
      {
        file: 'modeling_target.py',
        line: 11,
      },
    );
  });

  it('captures PyTorch runs with the interpreter --python names, before EKKA_PYTHON', async () => {
    const python = path.join(dir, 'python-without-torch');
    await fs.writeFile(python, '#!/bin/sh\necho "No module named torch" >&2\nexit 1\n', {
      mode: 0o755,
    });
    const config = path.join(ROOT, 'samples/serving-llama/cases/control-tp1/ekka.json');
    const run = ekka(['diagnose', config, '--python', python]);
    assertCleanFailure(run, /No module named torch/);
    assert.ok(run.stderr.includes(python), run.stderr);
  });

  it('exits 1 on a divergence with --fail-on-divergence, 0 on a clean control', () => {
    assert.equal(
      ekka(['diagnose', path.join(ROPE, 'ekka.json'), '--fail-on-divergence']).status,
      1,
    );
    const control = ekka([
      'diagnose',
      path.join(SAMPLE, 'cases/control-optimized-session/ekka.json'),
      '--fail-on-divergence',
    ]);
    assert.equal(control.status, 0, control.stderr);
    assert.match(control.stdout, /No divergence above noise/);
  });

  describe('bad input gets one clear message and exit 2', () => {
    it('a missing config', () =>
      assertCleanFailure(ekka(['diagnose', 'nope/ekka.json']), /nope\/ekka\.json: file not found/));

    it('a truncated target model', async () => {
      const bytes = await fs.readFile(path.join(SAMPLE, 'reference.onnx'));
      const broken = path.join(dir, 'broken.onnx');
      await fs.writeFile(broken, bytes.subarray(0, 5000));
      const run = ekka([
        'diagnose',
        '--target',
        broken,
        '--reference',
        path.join(SAMPLE, 'reference.onnx'),
        '--inputs',
        path.join(SAMPLE, 'input.json'),
      ]);
      assertCleanFailure(run, /broken\.onnx: not a valid ONNX model/);
    });

    it('inputs that do not match the model', async () => {
      const inputs = path.join(dir, 'wrong-inputs.json');
      await fs.writeFile(
        inputs,
        JSON.stringify({ tokens: { dtype: 'int64', shape: [1, 2], data: [1, 2] } }),
      );
      const run = ekka([
        'diagnose',
        '--target',
        path.join(SAMPLE, 'reference.onnx'),
        '--reference',
        path.join(SAMPLE, 'reference.onnx'),
        '--inputs',
        inputs,
      ]);
      assertCleanFailure(run, /model input "input_ids" is not given \(inputs given: tokens\)/);
    });

    it('missing flags', () =>
      assertCleanFailure(
        ekka(['diagnose', '--target', 'a.onnx']),
        /missing --reference, --inputs/,
      ));

    it('an unknown command or option', () => {
      assert.equal(ekka(['diagnoze']).status, 2);
      assert.equal(ekka(['diagnose', '--frobnicate']).status, 2);
    });
  });
});
