import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { RATIO_CAP } from '../../native-bridge/compare/errorRatio';
import { formatReport } from '../../native-bridge/cli/report';
import { resolveConfig } from '../../native-bridge/diagnosis/config';
import { diagnose } from '../../native-bridge/diagnosis/diagnose';
import { identity4, scratchDir, tinyModel, TINY_INPUTS, writeJson } from '../support/tinyOnnx';

/** x → /blk/MatMul(W) → /blk/<op> → /head/Relu */
function chain(weights: { dims: number[]; values: number[] }, blockOp: string): Uint8Array {
  return tinyModel([1, 4], { w: weights }, [
    { name: '/blk/MatMul', op: 'MatMul', inputs: ['x', 'w'], output: 'h0' },
    { name: `/blk/${blockOp}`, op: blockOp, inputs: ['h0'], output: 'h1' },
    { name: '/head/Relu', op: 'Relu', inputs: ['h1'], output: 'y' },
  ]);
}

async function diagnoseModels(target: Uint8Array, reference: Uint8Array) {
  const dir = await scratchDir();
  await fs.writeFile(path.join(dir, 'target.onnx'), target);
  await fs.writeFile(path.join(dir, 'reference.onnx'), reference);
  await writeJson(path.join(dir, 'in.json'), TINY_INPUTS);
  const config = await resolveConfig(
    { target: { model: 'target.onnx' }, reference: { model: 'reference.onnx' }, input: 'in.json' },
    dir,
  );
  return diagnose(config);
}

describe('diagnosis edge cases', () => {
  it('refuses to compare records whose shapes differ, naming the first', async () => {
    const narrow = { dims: [4, 3], values: identity4.values.slice(0, 12) };
    // Every value differs in shape: nothing is paired, which is an error, not "no divergence".
    await assert.rejects(
      diagnoseModels(chain(narrow, 'Abs'), chain(identity4, 'Abs')),
      (error: Error) => {
        assert.match(
          error.message,
          /no target value could be paired with a reference value \(2 target, 2 reference module outputs unmatched; first: blk@out0: shape differs: target \[1, 3\], reference \[1, 4\]\)/,
        );
        return true;
      },
    );
  });

  it('localizes NaN produced by a module like any other divergence', async () => {
    // Sqrt of the negative entries of x gives NaN where the reference (Abs) is finite.
    const result = await diagnoseModels(chain(identity4, 'Sqrt'), chain(identity4, 'Abs'));
    assert.equal(result.series[0]!.key, 'blk@out0');
    assert.deepEqual(result.series[0]!.target, { nan: 2, inf: 0 });
    assert.equal(result.series[0]!.nonFiniteMismatches, 2);
    assert.equal(result.series[0]!.ratio, RATIO_CAP);
    assert.equal(result.suspects[0]!.module, 'blk');
    assert.equal(result.suspects[0]!.op, 'Sqrt');
    assert.match(
      formatReport(result, '/'),
      /^1\s+blk\s+Sqrt \/blk\/Sqrt\s+1\.00e\+12 \(target: 2 NaN, 0 Inf\)/m,
    );
  });

  it('blames a divergent attention, not the mask it reads in another form than the reference', async () => {
    // SDPA reads a boolean [1, 4] mask; eager attention adds a float [1, 1] one (zeros here). The
    // masks do not pair; the target's attention multiplies by 1.5 where the reference's does not.
    const allTrue = { dims: [4], values: [-1e9, -1e9, -1e9, -1e9] };
    const head = { name: '/lm_head/MatMul', op: 'MatMul', inputs: ['a', 'w'], output: 'y' };
    const target = tinyModel(
      [1, 4],
      {
        low: allTrue,
        zeros: { dims: [4], values: [0, 0, 0, 0] },
        s: { dims: [1], values: [1.5] },
        w: identity4,
      },
      [
        { name: '/mask/Greater', op: 'Greater', inputs: ['x', 'low'], output: 'm' },
        { name: '/attn/Where', op: 'Where', inputs: ['m', 'x', 'zeros'], output: 'p' },
        { name: '/attn/Mul', op: 'Mul', inputs: ['p', 's'], output: 'a' },
        head,
      ],
    );
    const reference = tinyModel([1, 4], { zero: { dims: [1], values: [0] }, w: identity4 }, [
      { name: '/mask/ReduceSum', op: 'ReduceSum', inputs: ['x'], output: 'r' },
      { name: '/mask/Mul', op: 'Mul', inputs: ['r', 'zero'], output: 'm' },
      { name: '/attn/Add', op: 'Add', inputs: ['x', 'm'], output: 'a' },
      head,
    ]);
    const result = await diagnoseModels(target, reference);
    const attention = result.series.find((p) => p.module === 'attn')!;
    assert.equal(attention.unpairedInput, undefined);
    assert.ok(result.unmatched.some((u) => u.module === 'mask' && u.side === 'target'));
    assert.equal(result.suspects[0]!.module, 'attn');
  });
});
