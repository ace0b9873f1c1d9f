import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadDiagnosis } from '../../native-bridge/diagnosis/capturedConfig';
import { confineToFolder } from '../../native-bridge/diagnosis/confine';
import type { EkkaError } from '../../native-bridge/errors';

const SAMPLE = path.resolve('samples/tiny-llama');
const CASE = path.join(SAMPLE, 'cases', 'rope-interleaved', 'ekka.json');

describe('a diagnosis confined to its workspace folder', () => {
  it('accepts paths inside the folder', async () => {
    await confineToFolder(await loadDiagnosis(CASE), SAMPLE);
  });

  it('refuses a path that leaves the folder, naming the key', async () => {
    const config = await loadDiagnosis(CASE);
    await assert.rejects(confineToFolder(config, path.dirname(CASE)), (error: EkkaError) => {
      assert.equal(error.kind, 'config');
      assert.match(
        error.message,
        /ekka\.json: reference\.model: .*reference\.onnx is outside the workspace folder/,
      );
      return true;
    });
  });

  it('resolves links: a model linked from outside is outside', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-confine-'));
    try {
      await fs.symlink(path.join(SAMPLE, 'reference.onnx'), path.join(dir, 'reference.onnx'));
      await fs.copyFile(path.join(SAMPLE, 'input.json'), path.join(dir, 'input.json'));
      await fs.writeFile(
        path.join(dir, 'ekka.json'),
        JSON.stringify({
          target: { model: 'reference.onnx' },
          reference: { model: 'reference.onnx' },
          input: 'input.json',
        }),
      );
      const config = await loadDiagnosis(path.join(dir, 'ekka.json'));
      await assert.rejects(
        confineToFolder(config, dir),
        /target\.model: .* is outside the workspace folder/,
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('covers captured runs too', async () => {
    const serving = path.resolve('samples/serving-llama');
    const config = await loadDiagnosis(path.join(serving, 'cases', 'qkv-kv-swapped', 'ekka.json'));
    await confineToFolder(config, serving);
    await assert.rejects(
      confineToFolder(config, path.join(serving, 'cases')),
      /reference\.factory: .*reference\.py is outside the workspace folder/,
    );
  });
});
