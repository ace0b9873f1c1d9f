import * as assert from 'node:assert/strict';
import { buildErrorMap } from '../../native-bridge/compare/errorMap';

function floats(map: { values: Uint8Array }): Float32Array {
  return new Float32Array(map.values.slice().buffer);
}

describe('error map of one activation', () => {
  it('keeps tokens × channels as they are when small', () => {
    const reference = new Float32Array([1, 2, 3, 4, 5, 6]);
    const target = new Float32Array([1, 2.5, 3, 4, 5, 9]);
    const map = buildErrorMap([1, 2, 3], target, reference);
    assert.deepEqual([map.rows, map.cols, map.rowsPerCell, map.colsPerCell], [2, 3, 1, 1]);
    assert.deepEqual([...floats(map)], [0, 0.5, 0, 0, 0, 3]);
  });

  it('bins large activations to at most maxCells per side, keeping the largest error', () => {
    const tokens = 10;
    const channels = 9;
    const reference = new Float64Array(tokens * channels);
    const target = new Float64Array(tokens * channels);
    target[7 * channels + 8] = 2; // token 7, channel 8
    target[0] = -1; // token 0, channel 0
    const map = buildErrorMap([tokens, channels], target, reference, 4);
    assert.deepEqual([map.rows, map.cols, map.rowsPerCell, map.colsPerCell], [4, 3, 3, 3]);
    const values = floats(map);
    assert.equal(values[0], 1);
    assert.equal(values[Math.floor(7 / 3) * 3 + Math.floor(8 / 3)], 2);
    assert.equal(values.filter((v) => v > 0).length, 2);
  });

  it('shows a NaN or Inf mismatch as Infinity and agreeing non-finite values as 0', () => {
    const reference = new Float32Array([Infinity, NaN, 1, -Infinity]);
    const target = new Float32Array([Infinity, NaN, NaN, Infinity]);
    const map = buildErrorMap([4], target, reference);
    assert.deepEqual([...floats(map)], [0, 0, Infinity, Infinity]);
  });
});
