import * as assert from 'node:assert/strict';
import {
  breakablePieces,
  elideCommonPrefix,
  NARROW_PANEL_PX,
  suspectColumns,
  VERY_NARROW_PANEL_PX,
} from '../../webview/panel/suspectColumns';
import { hostileResult } from '../report/reportFixture';

describe('the suspects table', () => {
  it('elides the dotted prefix every suspect shares, never a whole name', () => {
    const names = elideCommonPrefix(['model.layers.2.self_attn', 'model.layers.3.mlp.act_fn']);
    assert.deepEqual([...names.values()], ['…2.self_attn', '…3.mlp.act_fn']);
    // One suspect, or nothing shared: whole names.
    assert.deepEqual(
      [...elideCommonPrefix(['model.layers.2.self_attn']).values()],
      ['model.layers.2.self_attn'],
    );
    assert.deepEqual(
      [...elideCommonPrefix(['lm_head', 'model.norm']).values()],
      ['lm_head', 'model.norm'],
    );
    // A parent and its child: the parent keeps its last part.
    const nested = elideCommonPrefix(['model.layers.2', 'model.layers.2.mlp']);
    assert.deepEqual([...nested.values()], ['…2', '…2.mlp']);
    assert.equal(elideCommonPrefix(['', 'model']).get(''), '(root)');
  });

  it('drops the op column on a narrow panel and keeps the op in the module tooltip', () => {
    const suspect = hostileResult().suspects[0]!;
    const wide = suspectColumns(1400);
    const narrow = suspectColumns(NARROW_PANEL_PX - 1);
    assert.deepEqual(
      wide.map((c) => c.header),
      ['#', 'module', 'op', 'ratio', 'conf.', 'source', ''],
    );
    assert.deepEqual(
      narrow.map((c) => c.header),
      ['#', 'module', 'ratio', 'conf.', 'source', ''],
    );
    const module = narrow.find((c) => c.header === 'module')!;
    assert.ok(module.title!(suspect).includes(suspect.op), module.title!(suspect));
    assert.equal(wide.find((c) => c.header === 'module')!.title!(suspect), suspect.module);
    // Narrower still, the source goes into the module's tooltip too.
    const tiny = suspectColumns(VERY_NARROW_PANEL_PX - 1);
    assert.deepEqual(
      tiny.map((c) => c.header),
      ['#', 'module', 'ratio', 'conf.', ''],
    );
    const tinyTitle = tiny.find((c) => c.header === 'module')!.title!(suspect);
    assert.ok(tinyTitle.includes(`${suspect.source!.file}:${suspect.source!.line}`), tinyTitle);
    // Fixed tracks fit a 500 px panel with room left for the module and source columns.
    const fixedEm = narrow
      .map((c) => /^([\d.]+)em$/.exec(c.width)?.[1])
      .filter((w): w is string => w !== undefined)
      .reduce((sum, w) => sum + Number(w), 0);
    assert.ok(fixedEm * 13 < 300, `${fixedEm} em of fixed columns`);
  });

  it('lets module names and paths wrap after separators only', () => {
    assert.deepEqual(breakablePieces('model.layers.2.self_attn'), [
      'model.',
      'layers.',
      '2.',
      'self_attn',
    ]);
    assert.deepEqual(breakablePieces('cases/rope/modeling_target.py:18'), [
      'cases/',
      'rope/',
      'modeling_target.',
      'py:',
      '18',
    ]);
    assert.equal(breakablePieces('model.layers.2.self_attn').join(''), 'model.layers.2.self_attn');
  });
});
