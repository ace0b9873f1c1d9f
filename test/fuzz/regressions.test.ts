/**
 * Counterexamples the fuzz properties found, kept as plain tests so they run every time whatever
 * the seed.
 */
import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { EkkaError } from '../../native-bridge/errors';
import {
  inlineExternalData,
  loadExternalData,
  readOnnxModel,
} from '../../native-bridge/onnx/modelFile';
import { scratchFolder } from './onnx.fuzz';

/** A one-node model whose initializer lives in the external file `location`. */
function externalModel(location: string): Uint8Array {
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'external',
        input: [{ name: 'x' }],
        output: [{ name: 'y' }],
        initializer: [
          {
            name: 'w',
            dims: [4],
            dataType: onnx.TensorProto.DataType.FLOAT,
            dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
            externalData: [{ key: 'location', value: location }],
          },
        ],
        node: [{ name: 'add', opType: 'Add', input: ['x', 'w'], output: ['y'] }],
      },
    }),
  ).finish();
}

describe('fuzz counterexamples', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await scratchFolder();
  });
  afterEach(() => fs.rm(dir, { recursive: true, force: true }));

  // Found by externalDataProperty: a location naming a folder passed readOnnxModel, and reading
  // it then failed with a bare EISDIR from fs.readFile.
  for (const location of ['.', 'sub']) {
    it(`an external data location naming a folder (${JSON.stringify(location)}) is an EkkaError`, async () => {
      await fs.mkdir(path.join(dir, 'sub'));
      const file = path.join(dir, 'model.onnx');
      await fs.writeFile(file, externalModel(location));
      await assert.rejects(readOnnxModel(file), (error: unknown) => {
        assert.ok(error instanceof EkkaError, String(error));
        assert.equal(error.kind, 'model');
        assert.equal(
          error.message,
          `${file}: external data file ${JSON.stringify(location)} is not a file`,
        );
        return true;
      });
    });
  }

  it('an external data file that becomes unreadable after the model was read is an EkkaError', async () => {
    const file = path.join(dir, 'model.onnx');
    await fs.writeFile(file, externalModel('weights.bin'));
    await fs.writeFile(path.join(dir, 'weights.bin'), new Uint8Array(16));
    const read = await readOnnxModel(file);
    await fs.rm(path.join(dir, 'weights.bin'));
    await fs.mkdir(path.join(dir, 'weights.bin'));
    await assert.rejects(
      async () => inlineExternalData(read.model, await loadExternalData(read), file),
      (error: unknown) => {
        assert.ok(error instanceof EkkaError, String(error));
        assert.match(error.message, /model\.onnx: cannot read external data file "weights\.bin"/);
        return true;
      },
    );
  });
});
