import * as assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadDiagnosis } from '../../native-bridge/diagnosis/capturedConfig';
import { diagnose } from '../../native-bridge/diagnosis/diagnose';
import type { DiagnosisResult } from '../../native-bridge/diagnosis/result';

const CASES = path.resolve('test/fixtures/hf-pytorch');
/** Created by `npm run setup:python` (part of `npm test`): torch 2.13 and transformers 5.17. */
const VENV_PYTHON = path.resolve('.venv/bin/python');

async function diagnoseCase(id: string): Promise<DiagnosisResult> {
  const config = await loadDiagnosis(path.join(CASES, id, 'ekka.json'));
  return diagnose(config);
}

/** The text of a line a result points at (files are relative to its sourceBase). */
function lineAt(result: DiagnosisResult, at: { file: string; line: number }): string {
  const file = path.resolve(result.sourceBase!, at.file);
  return readFileSync(file, 'utf8').split('\n')[at.line - 1]!.trim();
}

/** The line of a fixture's models.py that holds `text` (1-based). */
function modelsLine(text: string): number {
  const lines = readFileSync(path.join(CASES, 'models.py'), 'utf8').split('\n');
  const index = lines.findIndex((line) => line.includes(text));
  assert.ok(index >= 0, `models.py has no line with ${text}`);
  return index + 1;
}

/**
 * transformers' own Llama and Gemma as PyTorch captures (bfloat16 target, float32 reference,
 * measured noise), both sides HF modules under the family's preset: models.py plants the bugs.
 */
describe("diagnosis of transformers' models as PyTorch captures", function () {
  this.timeout(180_000);
  before(function () {
    assert.ok(existsSync(VENV_PYTHON), `${VENV_PYTHON} is missing: run npm run setup:python`);
  });

  it('a correct model reads within noise everywhere, act_fn included (the preset rule is not applied to HF against HF)', async () => {
    const result = await diagnoseCase('llama-control');
    assert.deepEqual(result.suspects, []);
    assert.equal(result.changePoint, null);
    const worst = Math.max(...result.series.map((p) => p.ratio));
    assert.ok(worst < 1.5, `largest ratio ${worst}`);
    const actFn = result.mapping!.pairs.filter((p) => /mlp\.act_fn#1$/.test(p.key));
    assert.equal(actFn.length, 3);
    assert.ok(actFn.every((p) => p.origin === 'same path'));
    assert.ok(result.warnings.some((w) => /preset llama: 3 rules not applied/.test(w)));
    // Every leaf module ran again on the reference's inputs: the same code reads 1.
    const grafted = result.series.filter((p) => p.ownRatio !== undefined);
    assert.ok(grafted.length >= 20, `${grafted.length} grafted leaves`);
    assert.ok(
      grafted.every((p) => p.ownRatio! < 1.1),
      'a correct leaf reads within noise',
    );
  });

  it('GELU in layer 1: act_fn of layer 1 first, ahead of the correct layer 0', async () => {
    const result = await diagnoseCase('llama-gelu');
    assert.equal(result.suspects[0]?.module, 'model.layers.1.mlp.act_fn');
    assert.equal(result.suspects[0].kind, 'local');
    assert.ok(result.suspects[0].ratio > 5);
    // A leaf's op is called from its parent's forward: the MLP is drilled, and the GELU is the
    // first op there that diverges, on the line that calls act_fn.
    const top = result.suspects[0];
    assert.equal(top.drillDown?.module, 'model.layers.1.mlp');
    assert.equal(top.statement?.op, 'F.gelu');
    assert.match(lineAt(result, top.source!), /self\.act_fn\(/);
    assert.ok(!result.suspects.some((s) => s.module.startsWith('model.layers.0.')));
  });

  it('Gemma: a norm scaling by w instead of (1 + w) is the top suspect', async () => {
    const result = await diagnoseCase('gemma-norm-offset');
    assert.equal(result.suspects[0]?.module, 'model.layers.2.post_attention_layernorm');
    assert.ok(result.suspects[0].ratio > 50);
    // The statement: the planted line of models.py, where the product with w leaves out the 1.
    const top = result.suspects[0];
    assert.deepEqual(
      { file: path.basename(top.source!.file), line: top.source!.line, kind: top.source!.kind },
      { file: 'models.py', line: modelsLine('output * self.weight.float()'), kind: 'statement' },
    );
    assert.equal(top.statement?.op, 'Tensor.mul');
    assert.equal(top.drillDown?.inputsAgree, true);
    // The ops before it (the normalisation itself) agree; the class is kept beside it.
    const first = top.drillDown.first!;
    assert.ok(top.drillDown.ops.slice(0, first).every((o) => (o.ratio ?? 1) < 1.5));
    assert.equal(top.moduleSource?.kind, 'class');
  });

  it("a residual add missing from a decoder layer's own forward names the layer, not its norm", async () => {
    const result = await diagnoseCase('llama-missing-residual');
    const top = result.suspects[0]!;
    assert.equal(top.module, 'model.layers.1');
    assert.equal(top.kind, 'local');
    // The evidence: the record the layer passes to its norm against the reference's residual sum.
    const point = result.series[top.index]!;
    assert.equal(point.key, 'model.layers.1.post_attention_layernorm#1:in.0');
    assert.equal(point.op, 'LlamaDecoderLayer');
    assert.match(top.source?.file ?? '', /modeling_llama\.py$/);
    assert.ok(point.inputRatio < 2 && point.ratio > 20);
    // Op by op, the layer's first divergent op reads the attention output where the reference
    // reads the residual sum: the reference's add just before it has no counterpart.
    assert.equal(top.drillDown?.module, 'model.layers.1');
    const missing = top.drillDown?.missing ?? [];
    assert.deepEqual(
      missing.map((m) => m.op),
      ['Tensor.add'],
    );
    assert.match(lineAt(result, missing[0]!.statement!), /residual \+ hidden_states/);
  });

  it('a down_proj weight 2 % off (about 3 × bfloat16 noise) is reported though the residual stream dilutes it', async () => {
    const result = await diagnoseCase('llama-down-proj-scaled');
    const top = result.suspects[0];
    assert.equal(top?.module, 'model.layers.0.mlp.down_proj');
    assert.equal(top.kind, 'local');
    assert.ok(top.ratio > 2 && top.ratio < 5, `ratio ${top.ratio}`);
    // Its measured input (the activation product) is within noise.
    assert.ok(result.series[top.index]!.inputRatio < 2);
    // Run on the reference's inputs the error is still its own; the leaves after it are clean.
    assert.ok(top.ownRatio! >= 2, `own ratio ${top.ownRatio}`);
    const after = result.series.filter((p) => p.index > top.index && p.ownRatio !== undefined);
    assert.ok(after.length > 0 && after.every((p) => p.ownRatio! <= 2));
    // The statement is the MLP's line that calls down_proj; the op is its linear.
    assert.equal(top.statement?.op, 'F.linear');
    assert.match(lineAt(result, top.source!), /self\.down_proj\(/);
  });

  it('an up_proj 0.4 % off reads under the faint bar in the run; its graft names it', async () => {
    const result = await diagnoseCase('llama-up-proj-faint');
    const top = result.suspects[0];
    assert.equal(top?.module, 'model.layers.1.mlp.up_proj');
    assert.equal(top.under, 'graft');
    const point = result.series[top.index]!;
    assert.ok(point.ratio < 1.5, `run ratio ${point.ratio}`);
    assert.ok(top.ownRatio! >= 1.5, `own ratio ${top.ownRatio}`);
    assert.ok(Math.abs(Math.exp(top.ownJump) - top.ownRatio!) < 1e-9);
    assert.equal(result.suspects.length, 1);
  });
});
