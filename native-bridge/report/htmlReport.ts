import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ANNOTATIONS_PATH, type Annotation } from '../annotations/annotation';
import { parseAnnotations } from '../annotations/annotationStore';
import { ROOT_CAUSES } from '../annotations/taxonomy';
import type { DiagnosisResult, Suspect } from '../diagnosis/result';
import { EkkaError, describeCause } from '../errors';
import {
  formatRatio,
  inheritedSummary,
  localEvidence,
  moduleName,
  ownRatioSentence,
  statementSentence,
  runTerms,
} from './formatting';

/**
 * What the report page's script reads from `<script type="application/json" id="ekka-report-data">`
 * (webview/report/reportPage.ts). The whole result travels, so the report is also the JSON result.
 */
export interface ReportPageData {
  result: DiagnosisResult;
  /** The noise model in words, as the page shows it. */
  noise: string;
}

/** Element ids shared with webview/report/reportPage.ts (which repeats them: it runs in a browser). */
const DATA_ID = 'ekka-report-data';
const CHART_ID = 'divergence-chart';

/** The scripts inlined into the page, read from the install by `loadReportAssets`. */
export interface ReportAssets {
  plotlyJs: string;
  pageJs: string;
}

const fmt = formatRatio;

/** The noise model in one line; the same words in the text, HTML and Markdown reports. */
export function describeNoise(noise: DiagnosisResult['noise']): string {
  return noise.source === 'low-precision-reference'
    ? 'measured: ‖X_R − Y_R‖ of the low-precision reference'
    : `analytic floor ${noise.floorFactor}·u(${noise.floorDType})·‖reference‖`;
}

/** Text for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/**
 * JSON for a `<script type="application/json">` element. `<`, `>` and `&` only occur inside JSON
 * strings, where `\u003c` means the same, so no string can close the element or open a comment;
 * U+2028/2029 are escaped for readers that treat the text as JavaScript.
 */
export function embedJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/**
 * Script text that can sit between `<script>` and `</script>`. `</script` inside JavaScript only
 * occurs in strings, regular expressions and comments, where `<\/script` means the same.
 * A `<!--` together with `<script` would switch the HTML parser into a state where `</script>` no
 * longer ends the element; no bundled asset has that, and one that did is refused.
 */
function inlineScriptText(js: string, name: string): string {
  const text = js.replace(/<\/(script)/gi, '<\\/$1');
  if (text.includes('<!--') && /<script/i.test(text)) {
    throw new EkkaError('runtime', `${name} cannot be inlined into the HTML report`);
  }
  return text;
}

const sha256 = (text: string): string =>
  `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/** A cell's text; `—` for nothing. */
type Cell = string | undefined;

function table(headers: string[], rows: Cell[][], className = ''): string {
  const head = headers.map((h) => `<th scope="col">${escapeHtml(h)}</th>`).join('');
  const body = rows
    .map((row) => `<tr>${row.map((cell) => `<td>${cell ?? '—'}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table${className ? ` class="${className}"` : ''}><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** `code` element with escaped text. */
const code = (text: string): string => `<code>${escapeHtml(text)}</code>`;

function runRows(result: DiagnosisResult, rel: (file: string) => string): Cell[][] {
  const runs: [string, DiagnosisResult['runs']['target'] | undefined][] = [
    ['target', result.runs.target],
    ['reference', result.runs.reference],
    ['reference (low precision)', result.runs.referenceLowPrecision],
  ];
  return runs
    .filter((run): run is [string, DiagnosisResult['runs']['target']] => run[1] !== undefined)
    .map(([role, info]) => [
      escapeHtml(role),
      code(rel(info.model)),
      escapeHtml(runTerms(info).engine),
      escapeHtml(info.executionProvider) +
        (info.fallbackReason ? `<br><small>${escapeHtml(info.fallbackReason)}</small>` : ''),
      escapeHtml(runTerms(info).optimization),
      escapeHtml(info.precision) +
        (info.keptFloat32?.length
          ? `<br><small>kept in float32: ${escapeHtml(info.keptFloat32.join(', '))}</small>`
          : ''),
      escapeHtml(runTerms(info).capture),
      String(info.capturedValues),
    ]);
}

/**
 * The custom kernel behind a suspect, in words (`rms_norm_kernel csrc/norm.cu:42, launches …`),
 * when a source locator found one. Read field by field, so any result version renders.
 */
export function describeKernel(suspect: Suspect): string | undefined {
  const kernel: unknown = (suspect as { kernel?: unknown }).kernel;
  if (typeof kernel === 'string') return kernel;
  if (!kernel || typeof kernel !== 'object') return undefined;
  const { symbol, name, file, line, launches } = kernel as Record<string, unknown>;
  const label = typeof symbol === 'string' ? symbol : typeof name === 'string' ? name : '';
  const where =
    typeof file === 'string' ? `${file}${typeof line === 'number' ? `:${line}` : ''}` : '';
  const launched = Array.isArray(launches)
    ? launches
        .map((site) => (site as Record<string, unknown> | null)?.symbol)
        .filter((site): site is string => typeof site === 'string')
    : [];
  const text = [label, where].filter(Boolean).join(' ');
  if (!text) return undefined;
  return launched.length ? `${text}, launches ${launched.join(', ')}` : text;
}

function suspectsSection(result: DiagnosisResult): string {
  if (result.suspects.length === 0) return '<p>No suspects: nothing diverged above noise.</p>';
  const withKernel = result.suspects.some((s) => describeKernel(s) !== undefined);
  const headers = [
    'rank',
    'module',
    'op',
    'ratio',
    'own ratio',
    'own jump',
    'confidence',
    'source',
  ];
  if (withKernel) headers.push('kernel');
  const rows = result.suspects.map((s) => {
    const point = result.series.find((p) => p.index === s.index);
    const nonFinite =
      point && point.target.nan + point.target.inf > 0
        ? `<br><small>target: ${point.target.nan} NaN, ${point.target.inf} Inf</small>`
        : '';
    const row: Cell[] = [
      String(s.rank),
      `${code(moduleName(s.module))} <small>#${s.index}</small>`,
      `${escapeHtml(s.op)}<br><small>${escapeHtml(s.node)}</small>`,
      `${fmt(s.ratio)}${nonFinite}`,
      s.ownRatio === undefined ? undefined : fmt(s.ownRatio),
      `×${fmt(Math.exp(s.ownJump))}`,
      s.confidence.toFixed(2),
      s.source
        ? `${code(`${s.source.file}:${s.source.line}`)}<br><small>${escapeHtml(s.source.symbol)}</small>`
        : undefined,
    ];
    if (withKernel) {
      const kernel = describeKernel(s);
      row.push(kernel === undefined ? undefined : code(kernel));
    }
    return row;
  });
  return table(headers, rows, 'suspects');
}

function verdict(result: DiagnosisResult): string {
  const cp = result.changePoint;
  const first = result.suspects[0];
  if (!cp && first) {
    return `<p class="verdict bad">Local divergence at #${first.index}: ${code(moduleName(first.module))} (${localEvidence(first, result.thresholds.ratio)}); it does not persist downstream, so there is no change point.</p>`;
  }
  if (!cp) {
    const worst = result.series.reduce<DiagnosisResult['series'][number] | undefined>(
      (best, p) => (!best || p.ratio > best.ratio ? p : best),
      undefined,
    );
    const spikes = result.spikes.length
      ? ` Isolated spikes, not persistent: ${result.spikes.map((i) => `#${i}`).join(', ')}.`
      : '';
    return (
      `<p class="verdict ok">No divergence above noise (threshold ${fmt(result.thresholds.ratio)})` +
      (worst
        ? `: the largest ratio is ${fmt(worst.ratio)} at ${code(moduleName(worst.module))}.`
        : '.') +
      `${spikes}</p>`
    );
  }
  const parts = [
    `<p class="verdict bad">Change point at #${cp.index}: ${code(moduleName(cp.module))} (ratio ${fmt(cp.ratio)})</p>`,
  ];
  const top = result.suspects[0];
  if (top && top.index < cp.index) {
    parts.push(
      `<p>The top suspect's output (#${top.index}) diverged earlier; the modules reading it carry its error from #${cp.index} on.</p>`,
    );
  }
  const inherited = inheritedSummary(result);
  if (inherited) parts.push(`<p>${escapeHtml(inherited)}</p>`);
  const own = top && ownRatioSentence(top, result, code(moduleName(top.module)));
  if (own) parts.push(`<p>${own}</p>`);
  const statement =
    top &&
    statementSentence(top, code(moduleName(top.module)), (f, l) => code(`${f}:${l}`), escapeHtml);
  if (statement) parts.push(`<p>${statement}</p>`);
  return parts.join('\n');
}

function annotationsSection(annotations: readonly Annotation[]): string {
  if (annotations.length === 0) return '<p>No annotations for the modules of this diagnosis.</p>';
  const summary = new Map(ROOT_CAUSES.map((cause) => [cause.id, cause.summary]));
  const rows = annotations.map((a): Cell[] => [
    `${code(a.cause)}${summary.has(a.cause) ? `<br><small>${escapeHtml(summary.get(a.cause)!)}</small>` : ''}`,
    escapeHtml(a.location),
    code(moduleName(a.module)) + (a.op ? `<br><small>${escapeHtml(a.op)}</small>` : ''),
    a.source ? code(`${a.source.file}:${a.source.line}`) : undefined,
    `<div class="note">${escapeHtml(a.note)}</div>`,
    escapeHtml(a.updated ?? a.created),
  ]);
  return table(['cause', 'location', 'module', 'source', 'note', 'updated'], rows, 'annotations');
}

function unmatchedSection(result: DiagnosisResult): string {
  if (result.unmatched.length === 0) return '<p>Every captured value was paired.</p>';
  const rows = result.unmatched.map((u): Cell[] => [
    escapeHtml(u.side),
    code(u.key),
    code(moduleName(u.module)),
    code(u.node),
    escapeHtml(u.reason),
  ]);
  const open = result.unmatched.length <= 20 ? ' open' : '';
  return `<details${open}><summary>${result.unmatched.length} unmatched</summary>\n${table(['side', 'key', 'module', 'node', 'reason'], rows)}\n</details>`;
}

function timingsSection(result: DiagnosisResult): string {
  const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  const runs = Object.entries(result.timings.runsMs)
    .filter((entry): entry is [string, number] => typeof entry[1] === 'number')
    .map(([run, ms]) => `${escapeHtml(run)} ${seconds(ms)}`)
    .join(', ');
  const parts = runs ? [runs] : [];
  if (parts.length && result.timings.lockstep) parts.push('runs in lockstep, segment by segment');
  const detail = parts.length ? ` (${parts.join('; ')})` : '';
  return `<p>${result.series.length} module outputs and ${result.comparedOps} ops compared in ${seconds(result.timings.totalMs)}${detail}.</p>`;
}

const STYLE = `
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; background: #fff;
  max-width: 1200px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.6em; margin: 0 0 4px; } h2 { font-size: 1.2em; margin: 28px 0 8px;
  border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.subtitle { color: #59636e; margin: 0; }
.verdict { font-size: 1.1em; font-weight: 600; } .verdict.bad { color: #b42318; } .verdict.ok { color: #1a7f37; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } tr { break-inside: avoid; }
code { font: 0.92em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: break-word; }
small { color: #59636e; } .note { white-space: pre-wrap; overflow-wrap: anywhere; }
#${CHART_ID} { width: 100%; height: 440px; }
ul.warnings li { color: #9a6700; }
@media print { body { padding: 0; max-width: none; } .modebar-container { display: none !important; }
  details { display: block; } details > summary { list-style: none; } }
`;

/**
 * The diagnosis as one self-contained HTML page: nothing is fetched (plotly and the page script are
 * inlined, the result is embedded as JSON), and a Content-Security-Policy allows exactly those two
 * scripts by hash and no network at all. Every piece of user text is escaped.
 */
export function renderHtmlReport(
  result: DiagnosisResult,
  annotations: readonly Annotation[],
  assets: ReportAssets,
): string {
  const noise = describeNoise(result.noise);
  const configDir = result.config ? path.dirname(result.config) : undefined;
  const rel = (file: string) => (configDir ? path.relative(configDir, file) || file : file);
  const data: ReportPageData = { result, noise };
  const plotlyJs = inlineScriptText(assets.plotlyJs, 'plotly.js');
  const pageJs = inlineScriptText(assets.pageJs, 'the report page script');
  // Plotly sets inline styles and adds a stylesheet at run time, hence 'unsafe-inline' for styles
  // only; data: images are its modebar's PNG export.
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(plotlyJs)} ${sha256(pageJs)}`,
    "style-src 'unsafe-inline'",
    'img-src data: blob:',
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  const title = result.name ? `Ekka diagnosis — ${result.name}` : 'Ekka diagnosis';
  const warnings = result.warnings.length
    ? `<ul class="warnings">${result.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('')}</ul>`
    : '<p>None.</p>';
  const t = result.thresholds;

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>${escapeHtml(title)}</h1>
${result.config ? `<p class="subtitle">${code(path.basename(result.config))} in ${code(path.dirname(result.config))}</p>` : ''}
</header>
<main>
<section id="verdict">
${verdict(result)}
</section>
<section id="runs">
<h2>Runs</h2>
${table(['run', 'model', 'engine', 'provider', 'optimization', 'precision', 'capture', 'captured values'], runRows(result, rel))}
</section>
<section id="noise">
<h2>Noise model</h2>
<p>Noise: ${escapeHtml(noise)}. A module's error ratio is its error over that noise; at or below
${fmt(t.ratio)} it is explained by precision. Change point: a level shift in log ratio lasting at
least ${t.minRun} modules (penalty scale ${fmt(t.penaltyScale)}, lookback ${t.lookback}).</p>
</section>
<section id="chart">
<h2>Divergence</h2>
<div id="${CHART_ID}" role="img" aria-label="Error ratio of every compared module in execution order, log scale"></div>
<noscript><p>The chart needs JavaScript; the suspects and data below do not.</p></noscript>
</section>
<section id="suspects">
<h2>Suspects</h2>
${suspectsSection(result)}
</section>
<section id="annotations">
<h2>Annotations</h2>
${annotationsSection(annotations)}
</section>
<section id="unmatched">
<h2>Unmatched records</h2>
${unmatchedSection(result)}
</section>
<section id="warnings">
<h2>Warnings</h2>
${warnings}
</section>
<section id="timings">
<h2>Timings</h2>
${timingsSection(result)}
</section>
</main>
<script>${plotlyJs}</script>
<script type="application/json" id="${DATA_ID}">${embedJson(data)}</script>
<script>${pageJs}</script>
</body>
</html>
`;
}

/**
 * Reads the scripts the HTML report inlines from the install: the page script built next to the
 * CLI bundle (dist/webview/reportPage.js beside dist/cli.js, or under dist/ when run from source)
 * and plotly from node_modules.
 */
export async function loadReportAssets(): Promise<ReportAssets> {
  const pageCandidates = [
    path.join(__dirname, 'webview', 'reportPage.js'),
    path.join(__dirname, '..', '..', 'dist', 'webview', 'reportPage.js'),
  ];
  const pageFile = pageCandidates.find((file) => existsSync(file));
  if (!pageFile) {
    throw new EkkaError(
      'runtime',
      'the report page script is not built (run `npm run build`)',
      pageCandidates[0],
    );
  }
  let plotlyFile: string;
  try {
    plotlyFile = require.resolve('plotly.js-cartesian-dist-min/plotly-cartesian.min.js', {
      paths: [__dirname],
    });
  } catch (cause) {
    throw new EkkaError('runtime', `plotly.js is not installed: ${describeCause(cause)}`);
  }
  const read = async (file: string) => {
    try {
      return await fs.readFile(file, 'utf8');
    } catch (cause) {
      throw new EkkaError('runtime', describeCause(cause), file);
    }
  };
  const [plotlyJs, pageJs] = await Promise.all([read(plotlyFile), read(pageFile)]);
  return { plotlyJs, pageJs };
}

/**
 * The nearest `.ekka/annotations.json` walking up from `startDir`, stopping at a folder holding
 * `.git` (the workspace root) or at the filesystem root.
 */
export function findAnnotationsFile(startDir: string): string | undefined {
  let dir = path.resolve(startDir);
  for (;;) {
    const file = path.join(dir, ANNOTATIONS_PATH);
    if (existsSync(file)) return file;
    const parent = path.dirname(dir);
    if (parent === dir || existsSync(path.join(dir, '.git'))) return undefined;
    dir = parent;
  }
}

/**
 * The annotations that belong in a report: those of the nearest annotations file whose module was
 * compared in this result. A file that cannot be read is a warning, never a failure.
 */
export async function readReportAnnotations(
  startDir: string,
  result: DiagnosisResult,
): Promise<{ annotations: Annotation[]; warnings: string[] }> {
  const file = findAnnotationsFile(startDir);
  if (!file) return { annotations: [], warnings: [] };
  try {
    const contents = parseAnnotations(await fs.readFile(file, 'utf8'), file);
    const modules = new Set(result.series.map((p) => p.module));
    return {
      annotations: contents.annotations.filter((a) => modules.has(a.module)),
      warnings: [],
    };
  } catch (cause) {
    const message = cause instanceof EkkaError ? cause.message : `${file}: ${describeCause(cause)}`;
    return { annotations: [], warnings: [`annotations not included: ${message}`] };
  }
}
