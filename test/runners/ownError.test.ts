import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import type { Tensor } from 'onnxruntime-node';
import { comparePair } from '../../native-bridge/compare/metrics';
import type { ActivationRecord } from '../../native-bridge/runners/activationRecord';
import { readInputFile } from '../../native-bridge/runners/inputFile';
import { OnnxCapture } from '../../native-bridge/runners/onnxRunner';

const SAMPLE = path.resolve('samples/tiny-llama');

/** Own error vs inherited: a segment run on the reference's inputs shows only the error it adds. */
describe('running a target segment on the reference’s inputs', () => {
  let reference: OnnxCapture;
  let target: OnnxCapture;
  const byKey = {
    reference: new Map<string, ActivationRecord>(),
    target: new Map<string, ActivationRecord>(),
  };
  const keyOf = { reference: new Map<string, string>(), target: new Map<string, string>() };

  before(async () => {
    const inputs = await readInputFile(path.join(SAMPLE, 'input.json'));
    const open = (model: string) =>
      OnnxCapture.open({ model, optimization: 'disabled', executionProvider: 'cpu' });
    reference = await open(path.join(SAMPLE, 'reference.onnx'));
    target = await open(path.join(SAMPLE, 'cases/rope-interleaved/target.onnx'));
    for (const [side, capture] of [
      ['reference', reference],
      ['target', target],
    ] as const) {
      for await (const records of capture.runSegments(inputs, 'modules')) {
        for (const r of records) {
          if (!r.boundaryKey) continue;
          byKey[side].set(r.boundaryKey, r);
          keyOf[side].set(r.name, r.boundaryKey);
        }
      }
    }
  });
  after(async () => {
    await reference.release();
    await target.release();
  });

  /** Largest relative error of segment k's float module outputs against the reference. */
  const worstError = (records: readonly ActivationRecord[]) =>
    Math.max(
      ...records
        .filter((r) => r.boundaryKey && r.dtype === 'float32')
        .map(
          (r) =>
            comparePair(
              r.data as Float32Array,
              byKey.reference.get(r.boundaryKey!)!.data as Float32Array,
            ).relativeL2Error,
        ),
    );

  const onReferenceInputs = async (k: number) => {
    const nameByKey = new Map([...keyOf.reference].map(([name, key]) => [key, name]));
    const given = reference.segmentInputs(k)!;
    const feeds: Record<string, Tensor> = {};
    for (const name of Object.keys(target.segmentInputs(k)!)) {
      const key = keyOf.target.get(name);
      feeds[name] = given[key ? nameByKey.get(key)! : name]!;
    }
    return target.runSegmentOn(k, feeds, 'modules');
  };

  it('a segment after the bug agrees with the reference: its error was inherited', async () => {
    const inherited = worstError([...byKey.target.values()].filter((r) => r.segment === 3));
    assert.ok(inherited > 1e-3, `layer 3 in the normal run: ${inherited}`);
    assert.ok(worstError(await onReferenceInputs(3)) < 1e-6);
  });

  it('the segment holding the bug still diverges: the error is its own', async () => {
    assert.ok(worstError(await onReferenceInputs(2)) > 1e-3);
  });
});
