import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import {
  discoverPython,
  pythonCandidates,
  PYTHON_CHOICES,
  torchProblem,
} from '../../native-bridge/runners/pythonDiscovery';
import { scratchDir } from '../support/tinyOnnx';

/** A stand-in interpreter: exits 0 (torch imports) or fails the way python does without torch. */
async function fakePython(dir: string, name: string, hasTorch: boolean): Promise<string> {
  const file = path.join(dir, name);
  const body = hasTorch
    ? 'exit 0'
    : `echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1`;
  await fs.writeFile(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

describe('Python interpreter discovery', () => {
  it("tries this package's virtual environment first, then python3 and Debian's", () => {
    assert.deepEqual(pythonCandidates('/opt/ekka'), [
      '/opt/ekka/.venv/bin/python',
      'python3',
      '/usr/bin/python3',
    ]);
  });

  it('says why an interpreter cannot capture', async () => {
    const dir = await scratchDir();
    const without = await fakePython(dir, 'no-torch', false);
    assert.equal(await torchProblem(without), "ModuleNotFoundError: No module named 'torch'");
    assert.equal(await torchProblem(path.join(dir, 'missing')), 'not found');
    assert.equal(await torchProblem(await fakePython(dir, 'with-torch', true)), undefined);
  });

  it('picks the first candidate that imports torch', async () => {
    const dir = await scratchDir();
    const candidates = [
      path.join(dir, 'missing'),
      await fakePython(dir, 'no-torch', false),
      await fakePython(dir, 'with-torch', true),
      await fakePython(dir, 'also-torch', true),
    ];
    assert.equal(await discoverPython(candidates), candidates[2]);
  });

  it('lists what it tried and how to choose when none imports torch', async () => {
    const dir = await scratchDir();
    const candidates = [path.join(dir, 'missing'), await fakePython(dir, 'no-torch', false)];
    await assert.rejects(discoverPython(candidates), (error: Error) => {
      assert.match(error.message, /no Python interpreter with PyTorch found/);
      assert.ok(error.message.includes(`${candidates[0]} (not found)`), error.message);
      assert.ok(error.message.includes(`${candidates[1]} (ModuleNotFoundError`), error.message);
      assert.ok(error.message.includes(PYTHON_CHOICES), error.message);
      return true;
    });
  });
});
