import * as assert from 'node:assert/strict';
import { drillModule, opsByModule } from '../../native-bridge/diagnosis/drillDown';
import { alignOps } from '../../native-bridge/mapping/alignOps';
import type { CapturedRecord } from '../../native-bridge/runners/capturedRecord';

const SIZE = 64;
/** Values with bfloat16-sized rounding noise (seeded, so the low-precision gap is fixed). */
function values(seed: number, scale = 1, noise = 0): Float32Array {
  let state = seed;
  const out = new Float32Array(SIZE);
  for (let i = 0; i < SIZE; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const jitter = ((state / 2 ** 31) * 2 - 1) * noise;
    out[i] = (Math.sin(i + seed) + 1.5) * scale * (1 + jitter);
  }
  return out;
}

let seq = 0;
const op = (
  k: number,
  name: string,
  data: Float32Array,
  inputs: string[],
  line: number,
  dtype = 'bfloat16',
): CapturedRecord => ({
  name: `mlp#1/op.${k}`,
  seq: seq++,
  module: 'mlp',
  className: 'MLP',
  call: 1,
  output: `op.${k}`,
  dtype,
  shape: [SIZE],
  data,
  inputs,
  op: name,
  statement: { file: '/work/model.py', line },
});

const options = {
  targetPrecision: 'bfloat16' as const,
  floorFactor: 64,
  bar: 1.5,
  relative: (file: string) => file.replace('/work/', ''),
};

describe('alignOps', () => {
  const at = (op: string, shape = [4]) => ({ op, shape });

  it('pairs identical sequences one to one', () => {
    const ops = [at('F.linear'), at('F.silu'), at('Tensor.mul')];
    assert.deepEqual(alignOps(ops, ops), [
      [0, 0],
      [1, 1],
      [2, 2],
    ]);
  });

  it("pairs a fused op with the last same-shaped op of the other side's group", () => {
    // F.rms_norm against the eager formula: to, pow, mean, add, rsqrt, mul, mul (weight).
    const eager = [
      at('Tensor.to'),
      at('Tensor.pow'),
      at('Tensor.mean', [1]),
      at('Tensor.add', [1]),
      at('torch.rsqrt', [1]),
      at('Tensor.mul'),
      at('Tensor.mul'),
      at('F.linear', [8]),
    ];
    assert.deepEqual(alignOps([at('F.rms_norm'), at('F.linear', [8])], eager), [
      [0, 6],
      [1, 7],
    ]);
  });

  it('skips an op one side has and the other does not, keeping the pairs after it', () => {
    const reference = [at('F.linear'), at('Tensor.add'), at('Tensor.to'), at('Tensor.pow')];
    const target = [at('F.linear'), at('Tensor.to'), at('Tensor.pow')];
    assert.deepEqual(alignOps(target, reference), [
      [0, 0],
      [1, 2],
      [2, 3],
    ]);
  });

  it('never pairs outputs of different shapes', () => {
    assert.deepEqual(alignOps([at('F.linear', [4])], [at('F.linear', [5])]), []);
  });
});

describe('drillModule', () => {
  // The reference in float32, its low-precision twin with bfloat16-sized noise.
  const exact = [values(1), values(2), values(3), values(4)];
  const reference = exact.map((data, k) =>
    op(
      k,
      ['F.linear', 'F.silu', 'Tensor.mul', 'F.linear'][k]!,
      data,
      k ? [`mlp#1/op.${k - 1}`] : ['arg.0'],
      10 + k,
      'float32',
    ),
  );
  const low = exact.map((_, k) =>
    op(k, reference[k]!.op!, values(k + 1, 1, 0.004), reference[k]!.inputs!, 10 + k),
  );

  it('names the first op that diverges while what it read agrees, with its line', () => {
    // The third op (a scaled weight's product) is 5 % off; the op after it carries that error.
    const target = exact.map((_, k) =>
      op(
        k,
        reference[k]!.op!,
        values(k + 1, k >= 2 ? 1.05 : 1, 0.004),
        reference[k]!.inputs!,
        10 + k,
      ),
    );
    const drill = drillModule('mlp', { target, reference, lowPrecision: low }, options);
    assert.equal(drill.first, 2);
    assert.equal(drill.inputsAgree, true);
    const first = drill.ops[2]!;
    assert.deepEqual(first.statement, { file: 'model.py', line: 12 });
    assert.ok(first.ratio! > 5, `ratio ${first.ratio}`);
    // The ops before it read as noise; the one after it reads its error as input.
    assert.ok(drill.ops[0]!.ratio! < 1.5 && drill.ops[1]!.ratio! < 1.5);
    assert.ok(drill.ops[3]!.inputRatio > 5);
    assert.equal(drill.missing, undefined);
  });

  it('reports no op when every op agrees', () => {
    // The target rounds like the low-precision reference: every op reads 1.
    const target = low.map((r) => ({ ...r, data: Float32Array.from(r.data) }));
    const drill = drillModule('mlp', { target, reference, lowPrecision: low }, options);
    assert.equal(drill.first, undefined);
    assert.deepEqual(
      drill.ops.map((o) => o.ratio),
      [1, 1, 1, 1],
    );
  });

  it('names what the reference computes before the first divergence that the target leaves out', () => {
    // The reference adds a residual (op 1) that the target skips: the target's op after it reads
    // the linear's output directly and diverges.
    const ref = [
      op(0, 'F.linear', values(1), ['arg.0'], 20, 'float32'),
      op(1, 'Tensor.add', values(2), ['mlp#1/op.0', 'arg.0'], 21, 'float32'),
      op(2, 'Tensor.pow', values(3), ['mlp#1/op.1'], 30, 'float32'),
    ];
    const lowRef = ref.map((r, k) => ({ ...r, dtype: 'bfloat16', data: values(k + 1, 1, 0.004) }));
    const target = [
      op(0, 'F.linear', values(1, 1, 0.004), ['arg.0'], 20),
      op(1, 'Tensor.pow', values(9), ['mlp#1/op.0'], 30),
    ];
    const drill = drillModule('mlp', { target, reference: ref, lowPrecision: lowRef }, options);
    assert.equal(drill.first, 1);
    assert.equal(drill.ops[1]!.reference, 'mlp#1/op.2');
    assert.deepEqual(drill.missing, [
      { op: 'Tensor.add', statement: { file: 'model.py', line: 21 } },
    ]);
    assert.equal(drill.unpairedReference, 1);
  });

  it('groups op records by module, leaving other records out', () => {
    const grouped = opsByModule([
      ...reference,
      { ...reference[0]!, name: 'mlp#1/', output: '' },
      { ...reference[0]!, name: 'attn#1/op.0', module: 'attn' },
    ]);
    assert.deepEqual([...grouped.keys()], ['mlp', 'attn']);
    assert.equal(grouped.get('mlp')!.length, 4);
  });
});
