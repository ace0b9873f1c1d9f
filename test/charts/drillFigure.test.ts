import * as assert from 'node:assert/strict';
import type { DrillDown } from '../../native-bridge/diagnosis/result';
import { drillFigure } from '../../webview/charts/drillFigure';
import { THEME } from '../support/chartTheme';

const op = (name: string, ratio: number | undefined, line: number) => ({
  name: `norm#1/op.${line}`,
  op: name,
  shape: [1, 4],
  ...(ratio !== undefined ? { ratio } : {}),
  inputRatio: 1,
  statement: { file: 'models.py', line },
});

interface Trace {
  x: number[];
  y: number[];
  text: string[];
  name: string;
  marker: { color: string | string[] };
}

describe('drillFigure', () => {
  const drill: DrillDown = {
    module: 'model.layers.2.norm',
    ops: [
      op('Tensor.pow', 1, 71),
      op('F.rms_norm', undefined, 72),
      op('Tensor.mul', 584.7, 80),
      op('Tensor.type_as', 426.1, 80),
    ],
    first: 2,
    inputsAgree: true,
    unpairedReference: 1,
  };

  it('plots the paired ops by call order, the divergent ones in the warning colour', () => {
    const { data, layout } = drillFigure(drill, THEME, 1.5);
    const ops = data[0] as unknown as Trace;
    // The op without a counterpart has no point; x keeps its place in the call order.
    assert.deepEqual(ops.x, [0, 2, 3]);
    assert.deepEqual(ops.y, [1, 584.7, 426.1]);
    assert.deepEqual(ops.marker.color, ['blue', 'orange', 'orange']);
    assert.match(ops.text[1]!, /Tensor\.mul \[1,4\] · ratio 584\.7 · inputs 1<br>models\.py:80/);
    assert.equal((layout.yaxis as { type: string }).type, 'log');
  });

  it('rings the op where the own error starts, with its line', () => {
    const { data } = drillFigure(drill, THEME, 1.5);
    const first = data[1] as unknown as Trace;
    assert.equal(first.name, 'own error starts');
    assert.deepEqual(first.x, [2]);
    assert.deepEqual(first.text, ['Tensor.mul at models.py:80']);
  });

  it('has no ring when no op diverges', () => {
    const { data } = drillFigure({ ...drill, first: undefined }, THEME, 1.5);
    assert.equal(data.length, 1);
  });
});
