import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../../native-bridge/diagnosis/config';
import { diagnose } from '../../native-bridge/diagnosis/diagnose';

const FIXTURES = path.resolve('test/fixtures/hf-onnx');

/** transformers' own classes, exported by torch's default (dynamo) exporter: generate.py. */
describe("diagnosis of transformers' models exported with dynamo=True", function () {
  this.timeout(120_000);
  for (const family of ['llama', 'gemma', 'llama-rope']) {
    it(`${family}: names the planted module first, with HF module paths`, async () => {
      const expected = JSON.parse(
        await fs.readFile(path.join(FIXTURES, family, 'expected.json'), 'utf8'),
      ) as { module: string };
      const result = await diagnose(await loadConfig(path.join(FIXTURES, family, 'ekka.json')));
      assert.ok(result.series.length > 40, `${result.series.length} module outputs`);
      assert.equal(result.suspects[0]?.module, expected.module);
      assert.ok(result.suspects[0].ratio > 10);
      assert.ok(!result.warnings.some((w) => /no module/.test(w)), result.warnings.join('\n'));
    });
  }

  it('the reference against itself at float32 reads 0 everywhere, masks included', async () => {
    const config = await loadConfig(path.join(FIXTURES, 'llama/ekka.json'));
    config.target = { ...config.reference };
    delete config.referenceLowPrecision;
    const result = await diagnose(config);
    assert.equal(result.suspects.length, 0);
    assert.ok(result.series.every((p) => p.ratio === 0 && p.nonFiniteMismatches === 0));
  });
});
