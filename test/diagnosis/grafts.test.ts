import * as assert from 'node:assert/strict';
import { graftOwnRatios } from '../../native-bridge/diagnosis/grafts';
import type { CapturedRecord } from '../../native-bridge/runners/capturedRecord';

const record = (module: string, output: string, values: number[], dtype = 'bfloat16') =>
  ({
    name: `${module}#1/${output}`,
    seq: 0,
    module,
    className: 'Linear',
    call: 1,
    output,
    dtype,
    shape: [values.length],
    data: Float32Array.from(values),
  }) satisfies CapturedRecord;

describe('graftOwnRatios', () => {
  const reference = new Map(
    [record('up', '', [1, 2, 3, 4], 'float32'), record('down', '0', [2, 2, 2, 2], 'float32')].map(
      (r) => [r.name, r],
    ),
  );

  it("reads the target's graft against the reference's output over the low-precision graft's", () => {
    const target = [
      record('up', '', [1.01, 2, 3, 4]), // a run record: not a graft, ignored
      record('up', 'graft', [1.04, 2, 3, 4]),
      record('down', 'graft.0', [2.01, 2, 2, 2]),
    ];
    const low = [
      record('up', 'graft', [1.01, 2, 3, 4]),
      record('down', 'graft.0', [2.01, 2, 2, 2]),
    ];
    const ratios = graftOwnRatios(target, low, reference, 'bfloat16', 64);
    assert.deepEqual([...ratios.keys()].sort(), ['down#1/0', 'up#1/']);
    // Same code on the same inputs: identical grafts read 1.
    assert.equal(ratios.get('down#1/0'), 1);
    // Four times the low-precision graft's distance (guarded by bfloat16 rounding of the values).
    const up = ratios.get('up#1/')!;
    assert.ok(up > 3 && up <= 4, `ratio ${up}`);
  });

  it('leaves out a graft missing on the low-precision side or of another size', () => {
    const target = [record('up', 'graft', [1, 2, 3]), record('down', 'graft.0', [2, 2, 2, 2])];
    const low = [record('up', 'graft', [1, 2, 3])];
    assert.equal(graftOwnRatios(target, low, reference, 'bfloat16', 64).size, 0);
  });
});
