import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { RATIO_CAP } from '../../native-bridge/compare/errorRatio';
import { loadConfig } from '../../native-bridge/diagnosis/config';
import { diagnose } from '../../native-bridge/diagnosis/diagnose';

const CASES = path.resolve('samples/benchmark/cases');
const diagnoseCase = async (id: string) =>
  diagnose(await loadConfig(path.join(CASES, id, 'ekka.json')));

describe('prefill + decode graphs', () => {
  it('folds the decode call onto its module and localizes a decode-only cache bug', async () => {
    const result = await diagnoseCase('decode-value-cache-offset');
    const top = result.suspects[0]!;
    assert.equal(top.module, 'model.layers.2.self_attn');
    assert.equal(result.series[top.index]!.call, 2); // the decode step, not the prefill
    // The prefill call of the same module is clean.
    const prefill = result.series.filter((p) => p.module === top.module && p.call === 1);
    assert.ok(prefill.length > 0 && prefill.every((p) => p.ratio < 2));
    assert.equal(
      result.series.some((p) => p.module.endsWith('_1')),
      false,
    );
  });

  it('compares integer values exactly: wrong decode positions diverge where they are computed', async () => {
    const result = await diagnoseCase('decode-kv-position');
    const positions = result.series.find((p) => p.dtype === 'int64' && p.ratio > 0);
    assert.ok(positions, 'no diverging integer value');
    assert.equal(positions.module, 'model');
    assert.equal(positions.ratio, RATIO_CAP);
    assert.equal(result.suspects[0]!.module, 'model');
    // Everywhere else integers agree exactly.
    const otherInts = result.series.filter((p) => p.dtype === 'int64' && p !== positions);
    assert.ok(otherInts.every((p) => p.ratio === 0));
  });
});
