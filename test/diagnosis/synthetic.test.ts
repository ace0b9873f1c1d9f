import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { RATIO_CAP } from '../../native-bridge/compare/errorRatio';
import { formatReport } from '../../native-bridge/cli/report';
import { resolveConfig } from '../../native-bridge/diagnosis/config';
import { runDiagnosis } from '../../native-bridge/diagnosis/diagnose';
import { identity4, scratchDir, tinyModel, TINY_INPUTS, writeJson } from '../support/tinyOnnx';

/** x → /blk/MatMul(W) → /blk/<op> → /head/Relu */
function chain(weights: { dims: number[]; values: number[] }, blockOp: string): Uint8Array {
  return tinyModel([1, 4], { w: weights }, [
    { name: '/blk/MatMul', op: 'MatMul', inputs: ['x', 'w'], output: 'h0' },
    { name: `/blk/${blockOp}`, op: blockOp, inputs: ['h0'], output: 'h1' },
    { name: '/head/Relu', op: 'Relu', inputs: ['h1'], output: 'y' },
  ]);
}

async function diagnose(target: Uint8Array, reference: Uint8Array) {
  const dir = await scratchDir();
  await fs.writeFile(path.join(dir, 'target.onnx'), target);
  await fs.writeFile(path.join(dir, 'reference.onnx'), reference);
  await writeJson(path.join(dir, 'in.json'), TINY_INPUTS);
  const config = await resolveConfig(
    { target: { model: 'target.onnx' }, reference: { model: 'reference.onnx' }, input: 'in.json' },
    dir,
  );
  return runDiagnosis(config);
}

describe('diagnosis edge cases', () => {
  it('refuses to compare records whose shapes differ, naming the first', async () => {
    const narrow = { dims: [4, 3], values: identity4.values.slice(0, 12) };
    // Every value differs in shape: nothing is paired, which is an error, not "no divergence".
    await assert.rejects(
      diagnose(chain(narrow, 'Abs'), chain(identity4, 'Abs')),
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
    const result = await diagnose(chain(identity4, 'Sqrt'), chain(identity4, 'Abs'));
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
});
