import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ANNOTATIONS_PATH } from '../../native-bridge/annotations/annotation';
import type { DiagnosisResult } from '../../native-bridge/diagnosis/result';
import {
  embedJson,
  findAnnotationsFile,
  readReportAnnotations,
  renderHtmlReport,
  type ReportPageData,
} from '../../native-bridge/report/htmlReport';
import { scratchDir } from '../support/tinyOnnx';
import { HOSTILE, HOSTILE_NOTE, hostileAnnotations, hostileResult } from './reportFixture';

/** Stand-ins for plotly and the page script: the page's own markup is under test here. */
const ASSETS = {
  plotlyJs: 'window.Plotly = { newPlot() { return Promise.resolve(); } }; // "</script>"',
  pageJs: 'document.title = document.title;',
};

/** The text of every `<script …>…</script>` element, with its attributes. */
function scripts(html: string): { attributes: string; text: string }[] {
  return [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/gi)].map((m) => ({
    attributes: m[1]!,
    text: m[2]!,
  }));
}

/** The page without its script elements: what a browser renders as markup. */
const markup = (html: string): string => html.replace(/<script[^>]*>[\s\S]*?<\/script>/gi, '');

function section(html: string, id: string): string {
  const match = new RegExp(`<section id="${id}">([\\s\\S]*?)</section>`).exec(html);
  assert.ok(match, `section #${id} missing`);
  return match[1]!;
}

const escaped = (text: string): string =>
  text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');

describe('HTML report', () => {
  const result = hostileResult();
  const annotations = hostileAnnotations();
  const html = renderHtmlReport(result, annotations, ASSETS);

  it('is one document with the sections a reader looks for', () => {
    assert.match(html, /^<!DOCTYPE html>\n<html lang="en">/);
    assert.equal(html.match(/<\/html>/g)?.length, 1);
    assert.match(html, /<title>Ekka diagnosis — sample &lt;b&gt;bold&lt;\/b&gt; &amp; &quot;/);
    for (const id of [
      'verdict',
      'runs',
      'noise',
      'chart',
      'suspects',
      'annotations',
      'unmatched',
      'warnings',
      'timings',
    ]) {
      section(html, id);
    }
    assert.match(section(html, 'chart'), /<div id="divergence-chart"/);
    const runs = section(html, 'runs');
    for (const word of ['ONNX Runtime', 'cpu', 'all', 'disabled', 'float32', 'partitioned']) {
      assert.ok(runs.includes(word), word);
    }
    // Model paths relative to the config's folder.
    assert.ok(runs.includes('<code>target.onnx</code>') && runs.includes('../reference.onnx'));
    assert.match(section(html, 'noise'), /analytic floor 64·u\(float32\)·‖reference‖/);
    assert.match(section(html, 'verdict'), /Change point at #3: <code>&lt;\/script&gt;/);
    assert.match(section(html, 'verdict'), /still diverges \(ratio 240\.00\)/);
    assert.match(section(html, 'timings'), /6 module outputs and 12 ops compared in 1\.23 s/);
  });

  it('embeds the whole result as JSON the page can read back', () => {
    const data = scripts(html).find((s) => s.attributes.includes('application/json'));
    assert.ok(data);
    assert.match(data.attributes, /id="ekka-report-data"/);
    const parsed = JSON.parse(data.text) as ReportPageData;
    assert.deepEqual(parsed.result, result);
    assert.equal(parsed.noise, 'analytic floor 64·u(float32)·‖reference‖');
  });

  it('escapes a hostile module name, note and reason everywhere', () => {
    assert.equal(scripts(html).length, 3, 'exactly plotly, the data and the page script');
    assert.equal(html.match(/<script/gi)?.length, 3);
    assert.equal(html.match(/<\/script/gi)?.length, 3);
    assert.ok(!html.includes('<img'), 'an <img> element made it into the page');
    assert.ok(!html.includes('onerror=alert(1)>'));
    assert.ok(!html.includes('<b>bold'));
    // Shown, escaped, where it belongs.
    assert.ok(section(html, 'suspects').includes(escaped(HOSTILE)));
    assert.ok(section(html, 'annotations').includes(escaped(HOSTILE_NOTE)));
    assert.ok(section(html, 'unmatched').includes(escaped(`no reference record ${HOSTILE}`)));
    assert.ok(section(html, 'warnings').includes(escaped(HOSTILE)));
    // The inlined plotly's "</script>" string cannot close its element.
    assert.ok(scripts(html)[0]!.text.includes('"<\\/script>"'));
  });

  it('escapes the embedded JSON so no string closes the script or breaks a JS reader', () => {
    const text = embedJson({ a: '</script><!-- & \u2028\u2029 >' });
    assert.doesNotMatch(text, /[<>&\u2028\u2029]/);
    assert.deepEqual(JSON.parse(text), { a: '</script><!-- & \u2028\u2029 >' });
  });

  it('lists every suspect and every annotation', () => {
    const suspects = section(html, 'suspects');
    assert.equal(suspects.match(/<tr>/g)?.length, 1 + result.suspects.length);
    for (const s of result.suspects) {
      assert.ok(suspects.includes(escaped(s.module)), s.module);
      assert.ok(suspects.includes(`${s.source!.file}:${s.source!.line}`));
    }
    assert.match(suspects, /<td>240\.00<\/td>/, 'own ratio of the top suspect');
    assert.match(suspects, /<td>0\.97<\/td>/, 'confidence');
    assert.doesNotMatch(suspects, />kernel</, 'no kernel column without kernels');
    const notes = section(html, 'annotations');
    assert.equal(notes.match(/<tr>/g)?.length, 1 + annotations.length);
    for (const a of annotations) {
      for (const text of [a.cause, a.location, a.module, a.note]) {
        assert.ok(notes.includes(escaped(text)), text);
      }
    }
    assert.ok(notes.includes('modeling.py:11'));
    assert.ok(notes.includes('rotary embedding pairing'), 'cause summary from the taxonomy');
  });

  it('shows a kernel column when a suspect names its kernel', () => {
    const withKernel = hostileResult();
    Object.assign(withKernel.suspects[0]!, {
      kernel: {
        op: 'rope',
        kind: 'function',
        symbol: 'rope<float>',
        file: 'csrc/rope.cu',
        line: 42,
        launches: [{ symbol: 'rotary_kernel', file: 'csrc/rope.cu', line: 10 }],
      },
    });
    const suspects = section(renderHtmlReport(withKernel, [], ASSETS), 'suspects');
    assert.match(suspects, />kernel</);
    assert.ok(suspects.includes('rope&lt;float&gt; csrc/rope.cu:42, launches rotary_kernel'));
    assert.equal(suspects.match(/<td>—<\/td>/g)?.length, 2 + 2, 'own ratio and kernel of #2, #3');
  });

  it('references nothing over the network', () => {
    assert.doesNotMatch(html, /https?:\/\//i);
    const page = markup(html);
    assert.doesNotMatch(page, /<[a-z][^>]*\s(src|href|action|srcset|poster|data)\s*=/i);
    assert.doesNotMatch(page, /<link\b|@import|url\(/i);
  });

  it('carries a CSP that allows exactly its two scripts, by hash, and no network', () => {
    const meta = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html);
    assert.ok(meta, 'no CSP meta tag');
    assert.ok(html.indexOf(meta[0]) < html.indexOf('<script'), 'CSP must come before scripts');
    const directives = new Map(
      meta[1]!.split(';').map((d) => {
        const [name, ...values] = d.trim().split(/\s+/);
        return [name!, values];
      }),
    );
    assert.deepEqual(directives.get('default-src'), ["'none'"]);
    const executable = scripts(html).filter((s) => !s.attributes.includes('application/json'));
    const hashes = executable.map(
      (s) => `'sha256-${createHash('sha256').update(s.text, 'utf8').digest('base64')}'`,
    );
    assert.deepEqual(directives.get('script-src'), hashes);
    for (const directive of ['connect-src', 'frame-src', 'font-src', 'object-src']) {
      assert.ok(!directives.has(directive), `${directive} would widen default-src 'none'`);
    }
    assert.deepEqual(directives.get('base-uri'), ["'none'"]);
    assert.deepEqual(directives.get('img-src'), ['data:', 'blob:']);
  });

  it('says so when nothing diverged', () => {
    const clean: DiagnosisResult = {
      ...hostileResult(),
      changePoint: null,
      suspects: [],
      spikes: [2],
      series: hostileResult().series.map((p) => ({ ...p, ratio: Math.min(p.ratio, 1.5) })),
      warnings: [],
      unmatched: [],
    };
    const page = renderHtmlReport(clean, [], ASSETS);
    assert.match(section(page, 'verdict'), /No divergence above noise \(threshold 2\.00\)/);
    assert.match(section(page, 'verdict'), /Isolated spikes, not persistent: #2/);
    assert.match(section(page, 'suspects'), /No suspects/);
    assert.match(section(page, 'annotations'), /No annotations/);
    assert.match(section(page, 'warnings'), /None\./);
  });
});

describe('report annotations', () => {
  const result = hostileResult();
  const file = (annotations: unknown[]) =>
    JSON.stringify({ format: 'ekka-annotations', version: 1, annotations });

  it('uses the nearest annotations file below the repository root, for modules in the result', async () => {
    const root = await scratchDir();
    const caseDir = path.join(root, 'repo', 'cases', 'one');
    await fs.mkdir(caseDir, { recursive: true });
    await fs.mkdir(path.join(root, 'repo', '.git'));
    await fs.mkdir(path.join(root, 'repo', '.ekka'));
    const annotations = hostileAnnotations();
    const other = { ...annotations[1]!, id: 'a3', module: 'model.not.compared' };
    await fs.writeFile(path.join(root, 'repo', ANNOTATIONS_PATH), file([...annotations, other]));
    assert.equal(findAnnotationsFile(caseDir), path.join(root, 'repo', ANNOTATIONS_PATH));
    const found = await readReportAnnotations(caseDir, result);
    assert.deepEqual(found.warnings, []);
    assert.deepEqual(
      found.annotations.map((a) => a.id),
      ['a1', 'a2'],
    );
  });

  it('stops at a folder holding .git', async () => {
    const root = await scratchDir();
    await fs.mkdir(path.join(root, '.ekka'));
    await fs.writeFile(path.join(root, ANNOTATIONS_PATH), file(hostileAnnotations()));
    const repo = path.join(root, 'repo');
    await fs.mkdir(path.join(repo, '.git'), { recursive: true });
    assert.equal(findAnnotationsFile(path.join(repo)), undefined);
    assert.deepEqual(await readReportAnnotations(repo, result), { annotations: [], warnings: [] });
  });

  it('turns an unreadable annotations file into a warning', async () => {
    const root = await scratchDir();
    await fs.mkdir(path.join(root, '.git'));
    await fs.mkdir(path.join(root, '.ekka'));
    await fs.writeFile(path.join(root, ANNOTATIONS_PATH), '{"format": "ekka-annotations", ');
    const found = await readReportAnnotations(root, result);
    assert.deepEqual(found.annotations, []);
    assert.equal(found.warnings.length, 1);
    assert.match(
      found.warnings[0]!,
      /annotations not included: .*annotations\.json: not valid JSON/,
    );
  });
});
