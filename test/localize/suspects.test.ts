import * as assert from 'node:assert/strict';
import {
  ownJump,
  rankSuspects,
  type SeriesPointForRanking,
} from '../../native-bridge/localize/suspects';
import { assertClose } from '../support/numbers';

const point = (
  index: number,
  module: string,
  ratio: number,
  inputRatio = 1,
  inputIndex?: number,
): SeriesPointForRanking => ({
  index,
  module,
  ratio,
  inputRatio,
  ...(inputIndex === undefined ? {} : { inputIndex }),
});

describe('rankSuspects', () => {
  it('ranks the module that adds the error above those that inherit it', () => {
    const points = [
      point(0, 'a', 0.5),
      point(1, 'b', 800),
      point(2, 'c', 900, 800, 1),
      point(3, 'd', 1200, 900, 2),
    ];
    const ranked = rankSuspects(points, 1);
    assert.deepEqual(
      ranked.map((s) => s.module),
      ['b', 'd', 'c'],
    );
    assertClose(ranked[0]!.ownJump, Math.log(800));
    assert.ok(ranked[0]!.confidence > 0.99);
    assertClose(
      ranked.reduce((sum, s) => sum + s.confidence, 0),
      1,
    );
  });

  it('traces inherited error back past the change point to where it entered', () => {
    // A mask diverges at #1, is consumed only from #6 on; #2–#5 are clean.
    const points = [
      point(0, 'embed', 0.1),
      point(1, 'mask', 5e4),
      ...[2, 3, 4, 5].map((i) => point(i, `clean${i}`, 0.3)),
      point(6, 'attn', 7e4, 5e4, 1),
      point(7, 'mlp', 8e4, 7e4, 6),
    ];
    const ranked = rankSuspects(points, 6, { threshold: 2, maxSuspects: 5, lookback: 0 });
    assert.equal(ranked[0]!.module, 'mask');
  });

  it('splits confidence between equal jumps and keeps at most maxSuspects', () => {
    const points = Array.from({ length: 8 }, (_, i) => point(i, `m${i}`, 100));
    const ranked = rankSuspects(points, 0, { threshold: 2, maxSuspects: 3, lookback: 0 });
    assert.equal(ranked.length, 3);
    for (const s of ranked) assertClose(s.confidence, 1 / 8);
  });

  it('scores own jump on a log scale, ignoring ratios below 1', () => {
    assertClose(ownJump(100, 10), Math.log(10));
    assert.equal(ownJump(0.5, 0.2), 0);
    assert.ok(ownJump(3, 30) < 0);
  });
});
