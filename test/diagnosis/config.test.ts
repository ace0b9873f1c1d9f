import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { resolveCapturedConfig } from '../../native-bridge/diagnosis/capturedConfig';
import { loadConfig, resolveConfig } from '../../native-bridge/diagnosis/config';
import { EkkaError } from '../../native-bridge/errors';
import { scratchDir } from '../support/tinyOnnx';
import { DEFAULT_THRESHOLDS } from '../support/thresholds';

const CASE = path.resolve('samples/tiny-llama/cases/rope-interleaved');

async function expectConfigError(content: unknown, pattern: RegExp, baseDir = CASE): Promise<void> {
  await assert.rejects(resolveConfig(content, baseDir, 'ekka.json'), (error: unknown) => {
    assert.ok(error instanceof EkkaError && error.kind === 'config', String(error));
    assert.ok(error.message.startsWith('ekka.json: '), error.message);
    assert.match(error.message, pattern);
    return true;
  });
}

const valid = {
  target: { model: 'target.onnx' },
  reference: { model: '../../reference.onnx' },
  input: '../../input.json',
};

describe('diagnosis config', () => {
  it('loads a sample, resolves paths and fills defaults', async () => {
    const config = await loadConfig(path.join(CASE, 'ekka.json'));
    assert.equal(config.target.model, path.join(CASE, 'target.onnx'));
    assert.equal(config.reference.model, path.resolve('samples/tiny-llama/reference.onnx'));
    assert.equal(config.target.optimization, 'all');
    assert.equal(config.reference.optimization, 'disabled');
    assert.equal(config.target.executionProvider, 'auto');
    assert.deepEqual(config.thresholds, DEFAULT_THRESHOLDS);
    assert.equal(config.source?.entryClass, 'TargetForCausalLM');
    assert.deepEqual(config.source?.searchPaths, [CASE, path.resolve('samples/tiny-llama')]);
  });

  it('derives a PyTorch low-precision reference from a float32 reference, unless told not to', async () => {
    const dir = path.resolve('samples/serving-llama/cases/control-tp2');
    const runs = {
      target: { kind: 'pytorch', factory: 'target.py:build', dtype: 'bfloat16' },
      reference: { kind: 'pytorch', factory: '../../reference.py:build', dtype: 'float32' },
    };
    const derived = await resolveCapturedConfig(runs, dir, 'ekka.json');
    assert.equal(derived.derivedLowPrecision, true);
    assert.deepEqual(derived.referenceLowPrecision, { ...derived.reference, dtype: 'bfloat16' });
    const analytic = await resolveCapturedConfig(
      { ...runs, referenceLowPrecision: false },
      dir,
      'ekka.json',
    );
    assert.equal(analytic.referenceLowPrecision, undefined);
    const fullPrecision = await resolveCapturedConfig(
      { ...runs, target: { ...runs.target, dtype: 'float32' } },
      dir,
      'ekka.json',
    );
    assert.equal(fullPrecision.referenceLowPrecision, undefined);
  });

  it('suggests the closest key for a typo', () =>
    expectConfigError(
      { ...valid, target: { model: 'target.onnx', optimisation: 'all' } },
      /\/target: unknown key "optimisation" \(did you mean "optimization"\?\)/,
    ));

  it('suggests top-level keys too', () =>
    expectConfigError(
      { ...valid, treshold: {} },
      /unknown key "treshold" \(did you mean "thresholds"\?\)/,
    ));

  it('names a missing required key', () =>
    expectConfigError(
      { target: valid.target, input: valid.input },
      /missing required key "reference"/,
    ));

  it('lists allowed values for an enum', () =>
    expectConfigError(
      { ...valid, target: { model: 'target.onnx', optimization: 'max' } },
      /\/target\/optimization: must be one of "disabled", "basic", "extended", "all"/,
    ));

  it('rejects wrong types and out-of-range thresholds', async () => {
    await expectConfigError({ ...valid, input: 42 }, /\/input: must be string/);
    await expectConfigError(
      { ...valid, thresholds: { ratio: 0.5 } },
      /\/thresholds\/ratio: must be > 1/,
    );
  });

  it('names a file that does not exist, with the key', () =>
    expectConfigError(
      { ...valid, target: { model: 'nope.onnx' } },
      /target\.model: file "nope.onnx" not found/,
    ));

  it('rejects a malformed source entry', () =>
    expectConfigError(
      { ...valid, source: { entry: 'modeling_target.py' } },
      /\/source\/entry: must match pattern/,
    ));

  it('reports invalid JSON with the file name', async () => {
    const dir = await scratchDir();
    const file = path.join(dir, 'ekka.json');
    await fs.writeFile(file, '{ "target": ');
    await assert.rejects(loadConfig(file), (error: unknown) => {
      assert.ok(error instanceof EkkaError);
      assert.match(error.message, /ekka\.json: not valid JSON/);
      return true;
    });
  });
});
