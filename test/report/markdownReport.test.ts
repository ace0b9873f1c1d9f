import * as assert from 'node:assert/strict';
import type { DiagnosisResult } from '../../native-bridge/diagnosis/result';
import {
  markdownCode,
  markdownText,
  renderMarkdownReport,
} from '../../native-bridge/report/markdownReport';
import { hostileAnnotations, hostileResult } from './reportFixture';

/** GitHub's table cell split: on pipes not escaped with a backslash. */
const cells = (row: string): string[] =>
  row
    .replace(/^\|\s?/, '')
    .replace(/\s?\|$/, '')
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim());

/** The table that follows a `### heading`, as rows of cells (header first, separator dropped). */
function tableAfter(markdown: string, heading: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.startsWith(heading));
  assert.ok(start >= 0, `${heading} missing`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 1)) {
    if (line === '' && rows.length === 0) continue;
    if (!line.startsWith('|')) break;
    rows.push(cells(line));
  }
  assert.match(rows[1]?.join(' ') ?? '', /^(---\s?)+$/, 'separator row');
  return [rows[0]!, ...rows.slice(2)];
}

describe('Markdown report', () => {
  const result = hostileResult();
  const annotations = hostileAnnotations();
  const markdown = renderMarkdownReport(result, annotations, {
    chartImage: 'out/divergence chart.png',
  });

  it('leads with the verdict, runs and noise', () => {
    assert.match(markdown, /^## Ekka diagnosis — sample &lt;b&gt;bold&lt;\/b&gt; &amp; "quoted"\n/);
    assert.match(
      markdown,
      /\*\*Change point at #3: `<\/script><img src=x onerror=alert\(1\)>`\*\*/,
    );
    assert.match(markdown, /still diverges \(ratio 240\.00\)/);
    assert.match(markdown, /Noise: analytic floor 64·u\(float32\)·‖reference‖\./);
    const runs = markdown.split('\n').filter((line) => line.startsWith('| target'));
    assert.deepEqual(cells(runs[0]!), [
      'target',
      '`target.onnx`',
      'ONNX Runtime',
      'cpu',
      'all',
      'float32',
      'partitioned, 2 segments',
    ]);
  });

  it("describes a PyTorch capture in its own terms, not ONNX Runtime's", () => {
    const captured = hostileResult();
    captured.runs.target = {
      ...captured.runs.target,
      framework: 'pytorch',
      model: 'serving.py:build',
      precision: 'bfloat16',
      optimization: 'disabled',
      capture: 'whole-graph',
      segments: 1,
    };
    const runs = renderMarkdownReport(captured, [])
      .split('\n')
      .filter((line) => line.startsWith('| target'));
    const row = cells(runs[0]!);
    assert.match(row[1]!, /serving\.py:build`$/);
    assert.deepEqual(
      [row[0], ...row.slice(2)],
      ['target', 'PyTorch', 'cpu', 'eager', 'bfloat16', 'module hooks'],
    );
  });

  it('has one row per suspect with as many cells as the header, pipes and backticks included', () => {
    const [header, ...rows] = tableAfter(markdown, '### Suspects');
    assert.equal(rows.length, result.suspects.length);
    for (const row of rows) assert.equal(row.length, header!.length, row.join(' ¦ '));
    assert.equal(rows[1]![1], '``model.layers.1.mlp\\|pipe`tick`` #4');
    assert.equal(rows[0]![4], '240.00');
  });

  it('adds a kernel column when a suspect names its kernel', () => {
    const withKernel = hostileResult();
    Object.assign(withKernel.suspects[1]!, {
      kernel: { op: 'norm', kind: 'cuda-kernel', symbol: 'norm|k', file: 'csrc/n.cu', line: 7 },
    });
    const [header, ...rows] = tableAfter(renderMarkdownReport(withKernel, []), '### Suspects');
    assert.equal(header!.at(-1), 'kernel');
    for (const row of rows) assert.equal(row.length, header!.length);
    assert.deepEqual(
      rows.map((row) => row.at(-1)),
      ['—', '`norm\\|k csrc/n.cu:7`', '—'],
    );
  });

  it('escapes annotation notes so they stay inert text in their cell', () => {
    const [header, ...rows] = tableAfter(markdown, '### Annotations');
    assert.equal(rows.length, annotations.length);
    for (const row of rows) assert.equal(row.length, header!.length);
    const note = rows[0]![4]!;
    assert.ok(!note.includes('<img'), note);
    assert.ok(note.includes('\\`swapped\\`'), 'backticks escaped');
    assert.ok(note.includes('rope \\| pairs'), 'pipe escaped');
    assert.ok(note.includes('<br>&amp; second line'), 'line break kept inside the cell');
    assert.ok(!/<!--/.test(markdown), 'an HTML comment would hide the rest of the report');
  });

  it('lists unmatched records and warnings, and the timings', () => {
    const [, ...rows] = tableAfter(markdown, '### Unmatched records (1)');
    assert.equal(rows.length, 1);
    assert.match(rows[0]![3]!, /^no reference record &lt;\/script&gt;&lt;img/);
    assert.match(markdown, /### Warnings\n\n- a warning with &lt;\/script&gt;/);
    assert.match(markdown, /<sub>6 module outputs and 12 ops compared in 1\.23 s/);
  });

  it('links the chart image when given, and only then', () => {
    assert.ok(markdown.includes('![Divergence chart](<out/divergence chart.png>)'));
    const plain = renderMarkdownReport(result, [], {});
    assert.ok(!plain.includes('!['));
    assert.ok(!plain.includes('### Annotations'));
  });

  it('says so when nothing diverged', () => {
    const clean: DiagnosisResult = {
      ...result,
      changePoint: null,
      suspects: [],
      unmatched: [],
      warnings: [],
    };
    const text = renderMarkdownReport(clean, [], {});
    assert.match(text, /\*\*No divergence above noise\*\* \(threshold 2\.00\)\./);
    assert.ok(!text.includes('### Suspects'));
  });

  it('escapes text and fences code spans', () => {
    assert.equal(markdownText('# a*b_c [x](y) |'), '\\# a\\*b\\_c \\[x\\](y) \\|');
    assert.equal(markdownText('1. first'), '1\\. first');
    assert.equal(markdownCode('a`b'), '``a`b``');
    assert.equal(markdownCode('`x'), '`` `x ``');
    assert.equal(markdownCode('a|b\nc'), '`a\\|b c`');
  });
});
