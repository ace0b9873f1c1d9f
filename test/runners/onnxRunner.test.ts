import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { EkkaError } from '../../native-bridge/errors';
import type { ActivationRecord } from '../../native-bridge/runners/activationRecord';
import {
  parseInputs,
  readInputFile,
  type InputTensor,
} from '../../native-bridge/runners/inputFile';
import { OnnxCapture } from '../../native-bridge/runners/onnxRunner';

const SAMPLE = path.resolve('samples/tiny-llama');
const REFERENCE = path.join(SAMPLE, 'reference.onnx');

async function capture(
  inputs: InputTensor[],
): Promise<{ records: ActivationRecord[]; capture: OnnxCapture }> {
  const run = await OnnxCapture.open({
    model: REFERENCE,
    optimization: 'disabled',
    executionProvider: 'auto',
  });
  const records: ActivationRecord[] = [];
  try {
    for await (const record of run.run(inputs)) records.push(record);
  } finally {
    await run.release();
  }
  return { records, capture: run };
}

describe('OnnxCapture', () => {
  let inputs: InputTensor[];
  before(async () => {
    inputs = await readInputFile(path.join(SAMPLE, 'input.json'));
  });

  it('yields every intermediate in execution order with module paths', async () => {
    const { records, capture: run } = await capture(inputs);
    // `auto` takes CUDA where onnxruntime-node has it and it starts; otherwise CPU, saying why.
    if (run.info.executionProvider === 'cpu') {
      assert.match(run.info.fallbackReason ?? '', /CUDA execution provider/);
    } else {
      assert.equal(run.info.executionProvider, 'cuda');
      assert.equal(run.info.fallbackReason, undefined);
    }
    assert.deepEqual(
      records.map((r) => r.seq),
      records.map((_, i) => i),
    );
    assert.equal(records[0]!.nodeName, '/model/embed_tokens/Gather');
    assert.equal(records[0]!.module, 'model.embed_tokens');
    const last = records[records.length - 1]!;
    assert.equal(last.name, 'logits');
    assert.equal(last.module, 'lm_head');
    assert.deepEqual(last.shape, [1, 16, 256]);
    const q = records.find((r) => r.nodeName === '/model/layers.2/self_attn/q_proj/MatMul')!;
    assert.equal(q.module, 'model.layers.2.self_attn.q_proj');
    assert.equal(q.boundaryKey, 'model.layers.2.self_attn.q_proj@out0');
    assert.deepEqual(q.shape, [1, 16, 64]);
    // Values that stay inside their module carry no boundary key.
    const pow = records.find((r) => r.nodeName === '/model/layers.0/input_layernorm/Pow')!;
    assert.equal(pow.boundaryKey, undefined);
  });

  it('returns the same logits as a plain session on the unmodified model', async () => {
    const { records } = await capture(inputs);
    const captured = records.find((r) => r.name === 'logits')!.data as Float32Array;
    const plain = await ort.InferenceSession.create(REFERENCE, {
      graphOptimizationLevel: 'disabled',
    });
    const feeds = Object.fromEntries(
      inputs.map((i) => [
        i.name,
        new ort.Tensor('int64', BigInt64Array.from(i.data, BigInt), i.shape),
      ]),
    );
    const logits = (await plain.run(feeds)).logits!.data as Float32Array;
    await plain.release();
    assert.equal(captured.length, logits.length);
    for (let i = 0; i < logits.length; i++) assert.equal(captured[i], logits[i], `logit ${i}`);
  });

  describe('rejects inputs that do not fit the model, naming the input', () => {
    const run = async (content: unknown) => {
      const parsed = parseInputs(content, 'in.json');
      const session = await OnnxCapture.open({
        model: REFERENCE,
        optimization: 'disabled',
        executionProvider: 'cpu',
      });
      try {
        for await (const record of session.run(parsed)) void record;
      } finally {
        await session.release();
      }
    };
    const ids = { dtype: 'int64', shape: [1, 2], data: [1, 2] };
    const expectInputError = (content: unknown, pattern: RegExp) =>
      assert.rejects(run(content), (error: unknown) => {
        assert.ok(error instanceof EkkaError && error.kind === 'input', String(error));
        assert.match(error.message, pattern);
        return true;
      });

    it('a missing input', () =>
      expectInputError({ input_ids: ids }, /model input "position_ids" is not given/));
    it('an unknown input', () =>
      expectInputError({ input_ids: ids, position_ids: ids, mask: ids }, /no input named mask/));
    it('a wrong dtype', () =>
      expectInputError(
        { input_ids: { ...ids, dtype: 'float32' }, position_ids: ids },
        /"input_ids" must be int64, got float32/,
      ));
    it('a wrong rank', () =>
      expectInputError(
        { input_ids: { dtype: 'int64', shape: [2], data: [1, 2] }, position_ids: ids },
        /"input_ids" must have rank 2/,
      ));
    it('data that does not fill the shape', () =>
      expectInputError(
        { input_ids: { dtype: 'int64', shape: [1, 3], data: [1, 2] }, position_ids: ids },
        /holds 3 elements but data has 2/,
      ));
    it('an unsupported dtype', () =>
      expectInputError({ input_ids: { ...ids, dtype: 'complex64' } }, /dtype must be one of/));
  });
});
