import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { ReportPageData } from '../../native-bridge/report/htmlReport';
import { scratchDir } from '../support/tinyOnnx';

const ROOT = path.resolve('.');
const BIN = path.join(ROOT, 'bin/ekka.js');
const SAMPLE = path.join(ROOT, 'samples/tiny-llama');

function ekka(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

function embedded(html: string): ReportPageData {
  const match = /<script type="application\/json" id="ekka-report-data">([^<]*)<\/script>/.exec(
    html,
  );
  assert.ok(match, 'no embedded data');
  return JSON.parse(match[1]!) as ReportPageData;
}

/**
 * A copy of the rope-interleaved sample in its own repository (a `.git` folder), so annotations
 * can be put above the case folder without touching the checkout.
 */
async function sampleRepository(): Promise<{ repo: string; config: string }> {
  const repo = path.join(await scratchDir(), 'repo');
  const copy = path.join(repo, 'tiny-llama');
  await fs.mkdir(path.join(repo, '.git'), { recursive: true });
  for (const file of ['reference.onnx', 'input.json', 'modeling_llama.py']) {
    await fs.mkdir(copy, { recursive: true });
    await fs.copyFile(path.join(SAMPLE, file), path.join(copy, file));
  }
  await fs.cp(
    path.join(SAMPLE, 'cases/rope-interleaved'),
    path.join(copy, 'cases/rope-interleaved'),
    { recursive: true },
  );
  return { repo, config: path.join(copy, 'cases/rope-interleaved/ekka.json') };
}

const annotation = (id: string, module: string, note: string) => ({
  id,
  created: '2026-01-02T03:04:05.000Z',
  module,
  location: 'model',
  cause: 'model/rope',
  note,
});

describe('ekka diagnose --html', () => {
  before(function () {
    if (!existsSync(path.join(ROOT, 'dist/cli.js'))) {
      throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)');
    }
  });

  it('writes a self-contained report with the annotations of the enclosing folders', async () => {
    const { repo, config } = await sampleRepository();
    await fs.mkdir(path.join(repo, '.ekka'));
    await fs.writeFile(
      path.join(repo, '.ekka/annotations.json'),
      JSON.stringify({
        format: 'ekka-annotations',
        version: 1,
        annotations: [
          annotation('a1', 'model.layers.2.self_attn', 'GPT-J <pairs> on a NeoX checkpoint'),
          annotation('a2', 'model.not.in.this.model', 'belongs to another diagnosis'),
        ],
      }),
    );
    const out = path.join(repo, 'reports/nested/rope.html');
    const run = ekka(['diagnose', config, '--html', out, '--json', path.join(repo, 'r.json')]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /Wrote .*reports\/nested\/rope\.html/);
    const html = await fs.readFile(out, 'utf8');
    assert.match(html, /<meta http-equiv="Content-Security-Policy"/);
    assert.match(html, /Change point at #\d+: <code>model\.layers\.2\.self_attn<\/code>/);
    assert.match(html, /<code>modeling_target\.py:18<\/code>/);
    assert.ok(html.includes('GPT-J &lt;pairs&gt; on a NeoX checkpoint'));
    assert.ok(!html.includes('belongs to another diagnosis'), 'annotation of another model');
    // The embedded result is the JSON result.
    const json = JSON.parse(await fs.readFile(path.join(repo, 'r.json'), 'utf8')) as unknown;
    assert.deepEqual(embedded(html).result, json);
    // plotly and the page script are inlined: no element loads anything.
    assert.ok(html.length > 1_000_000, `${html.length} bytes: plotly not inlined?`);
    const markup = html.replace(/<script[^>]*>[\s\S]*?<\/script>/gi, '');
    assert.doesNotMatch(markup, /<[a-z][^>]*\s(src|href)\s*=/i);
    assert.doesNotMatch(markup, /https?:/);
  });

  it('reports an unreadable annotations file as a warning and still succeeds', async () => {
    const { repo, config } = await sampleRepository();
    await fs.mkdir(path.join(repo, '.ekka'));
    await fs.writeFile(path.join(repo, '.ekka/annotations.json'), '{ not json');
    const out = path.join(repo, 'rope.html');
    const run = ekka(['diagnose', config, '--html', out]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(
      run.stdout,
      /warning: annotations not included: .*annotations\.json: not valid JSON/,
    );
    const html = await fs.readFile(out, 'utf8');
    assert.match(html, /<li>annotations not included: [^<]*not valid JSON/);
    assert.ok(embedded(html).result.warnings.some((w) => w.includes('annotations not included')));
  });

  it('names the file and exits 2 when the report cannot be written', async () => {
    const dir = await scratchDir();
    const blocker = path.join(dir, 'a-file');
    await fs.writeFile(blocker, '');
    const given = path.join(blocker, 'report.html');
    const run = ekka([
      'diagnose',
      path.join(SAMPLE, 'cases/rope-interleaved/ekka.json'),
      '--html',
      given,
    ]);
    assert.equal(run.status, 2, run.stderr);
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.ok(run.stderr.startsWith(`ekka: ${given}: cannot write the HTML report: `), run.stderr);
    assert.doesNotMatch(run.stderr, /^\s+at /m, 'stack trace printed');
  });

  it('lists --html in the usage', () => {
    const run = ekka(['--help']);
    assert.equal(run.status, 0);
    assert.match(
      run.stdout,
      /ekka diagnose <ekka\.json> [^\n]*\[--json out\.json\]\s+\[--html report\.html\]/,
    );
  });
});
