import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import {
  numberToBfloat16Bits,
  numberToFloat16Bits,
  opWithoutKernel,
} from '../../native-bridge/onnx/lowPrecision';
import type { ActivationRecord } from '../../native-bridge/runners/activationRecord';
import { readInputFile } from '../../native-bridge/runners/inputFile';
import { OnnxCapture, type Precision } from '../../native-bridge/runners/onnxRunner';
import { bfloat16BitsToNumber, float16BitsToNumber } from '../../native-bridge/tensors/dtypes';

const SAMPLE = path.resolve('samples/tiny-llama');

describe('rounding to 16-bit floats', () => {
  it('encodes binary16 with round-to-nearest-even, saturating nothing itself', () => {
    assert.equal(numberToFloat16Bits(1), 0x3c00);
    assert.equal(numberToFloat16Bits(-2), 0xc000);
    assert.equal(numberToFloat16Bits(65504), 0x7bff);
    assert.equal(numberToFloat16Bits(65520), 0x7c00); // rounds up past the largest finite value
    assert.equal(numberToFloat16Bits(2 ** -24), 0x0001); // smallest subnormal
    assert.equal(numberToFloat16Bits(2 ** -26), 0x0000); // underflows to zero
    assert.equal(numberToFloat16Bits(1 + 2 ** -11), 0x3c00); // tie goes to the even mantissa
    assert.equal(numberToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie goes up to the even one
    assert.equal(numberToFloat16Bits(-Infinity), 0xfc00);
    assert.ok(Number.isNaN(float16BitsToNumber(numberToFloat16Bits(NaN))));
  });

  it('round-trips every finite binary16 value', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = float16BitsToNumber(bits);
      if (!Number.isFinite(value)) continue;
      const back = numberToFloat16Bits(value);
      assert.ok(
        back === bits || (value === 0 && (back & 0x7fff) === 0),
        `bits ${bits.toString(16)}`,
      );
    }
  });

  it('encodes bfloat16 with round-to-nearest-even', () => {
    assert.equal(numberToBfloat16Bits(1), 0x3f80);
    assert.equal(numberToBfloat16Bits(-3), 0xc040);
    assert.equal(bfloat16BitsToNumber(numberToBfloat16Bits(1 + 2 ** -8)), 1); // tie to even (ulp 2^-7)
    assert.equal(bfloat16BitsToNumber(numberToBfloat16Bits(1 + 3 * 2 ** -8)), 1 + 2 ** -6);
  });
});

describe('opWithoutKernel', () => {
  it('reads the op from onnxruntime’s load errors', () => {
    assert.equal(
      opWithoutKernel("Could not find an implementation for Mul(14) node with name '/model/Mul'"),
      'Mul',
    );
    assert.equal(
      opWithoutKernel(
        "Type Error: Type 'tensor(bfloat16)' of input parameter (/x) of operator (Sin) in node (/model/rotary_emb/Sin) is invalid.",
      ),
      'Sin',
    );
    assert.equal(opWithoutKernel('some other failure'), undefined);
  });
});

describe('runs at a chosen precision', () => {
  const capture = async (
    precision: Precision,
  ): Promise<{ records: ActivationRecord[]; run: OnnxCapture }> => {
    const inputs = await readInputFile(path.join(SAMPLE, 'input.json'));
    const run = await OnnxCapture.open({
      model: path.join(SAMPLE, 'reference.onnx'),
      optimization: 'disabled',
      executionProvider: 'cpu',
      precision,
    });
    const records: ActivationRecord[] = [];
    try {
      for await (const record of run.run(inputs)) records.push(record);
    } finally {
      await run.release();
    }
    return { records, run };
  };

  it('stores activations in float16 and keeps the float32 interface', async () => {
    const { records, run } = await capture('float16');
    assert.equal(run.info.precision, 'float16');
    const q = records.find((r) => r.nodeName === '/model/layers.1/self_attn/q_proj/MatMul')!;
    assert.equal(q.dtype, 'float16');
    assert.ok(q.data instanceof Uint16Array);
    const logits = records.find((r) => r.name === 'logits')!;
    assert.equal(logits.dtype, 'float32');
    // The saturated mask keeps attention finite: no NaN anywhere.
    const logitValues = logits.data as Float32Array;
    assert.ok(logitValues.every((v) => Number.isFinite(v)));
  });

  it('runs bfloat16, reading bfloat16 values back through exact float32 copies', async () => {
    const { records, run } = await capture('bfloat16');
    // The CPU provider lacks bfloat16 kernels for most ops; they run in float32 between Casts.
    for (const op of ['MatMul', 'Softmax', 'Mul'])
      assert.ok(run.info.keptFloat32?.includes(op), op);
    const q = records.find((r) => r.nodeName === '/model/layers.1/self_attn/q_proj/MatMul')!;
    assert.equal(q.dtype, 'bfloat16');
    const values = q.data as Float32Array;
    // Every value is exactly representable in bfloat16: its low 16 bits are zero.
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    assert.ok(bits.every((b) => (b & 0xffff) === 0));
  });
});
