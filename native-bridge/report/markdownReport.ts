import * as path from 'node:path';
import type { Annotation } from '../annotations/annotation';
import type { DiagnosisResult } from '../diagnosis/result';
import { describeKernel, describeNoise } from './htmlReport';
import {
  formatRatio,
  inheritedSummary,
  localEvidence,
  moduleName,
  ownRatioSentence,
  statementSentence,
  runTerms,
} from './formatting';

export interface MarkdownReportOptions {
  /** Path of a PNG of the Divergence chart, relative to where the Markdown will live. */
  chartImage?: string;
}

const fmt = formatRatio;

/**
 * User text (notes, reasons, names) as inert Markdown: characters that could start emphasis, a
 * link, code or HTML are escaped, a pipe cannot end a table cell, and a leading `#`, `-`, `+` or
 * `1.` cannot open a heading or list. Line breaks become `<br>`, the one HTML tag kept, so a
 * multi-line note stays in its cell or list item.
 */
export function markdownText(text: string): string {
  return text
    .replace(/[\\`*_[\]|~]/g, (c) => `\\${c}`)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/^(\s*)([#+=-])/, '$1\\$2')
    .replace(/^(\s*\d+)([.)])/, '$1\\$2')
    .replace(/\r?\n/g, '<br>');
}

/**
 * A code span holding `text` exactly: fenced with one more backtick than the longest run inside,
 * padded when it starts or ends with a backtick. Pipes are escaped, which GitHub's tables undo
 * even inside code; line breaks become spaces (a code span cannot hold one).
 */
export function markdownCode(text: string): string {
  const flat = text.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');
  const longest = Math.max(0, ...(flat.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  const pad = flat.startsWith('`') || flat.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${flat}${pad}${fence}`;
}

function table(headers: string[], rows: string[][]): string {
  return [
    `| ${headers.join(' | ')} |`,
    `| ${headers.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${row.map((cell) => cell || '—').join(' | ')} |`),
  ].join('\n');
}

/** A relative path as a Markdown link destination: `<…>` keeps spaces and parentheses literal. */
function linkDestination(file: string): string {
  return `<${file.replace(/\\/g, '/').replace(/[<>]/g, encodeURIComponent)}>`;
}

/**
 * The diagnosis as GitHub-flavoured Markdown for a bug report: the verdict, runs, suspects,
 * annotations, unmatched records and warnings, with the chart as an image when one was saved.
 */
export function renderMarkdownReport(
  result: DiagnosisResult,
  annotations: readonly Annotation[],
  options: MarkdownReportOptions = {},
): string {
  const out: string[] = [];
  out.push(`## Ekka diagnosis${result.name ? ` — ${markdownText(result.name)}` : ''}`, '');

  const cp = result.changePoint;
  if (cp) {
    out.push(
      `**Change point at #${cp.index}: ${markdownCode(moduleName(cp.module))}** (ratio ${fmt(cp.ratio)}, threshold ${fmt(result.thresholds.ratio)})`,
    );
    const inherited = inheritedSummary(result);
    if (inherited) out.push('', markdownText(inherited));
    const top = result.suspects[0];
    const own = top && ownRatioSentence(top, result, markdownCode(moduleName(top.module)));
    if (own) out.push('', own);
    const statement =
      top &&
      statementSentence(top, markdownCode(moduleName(top.module)), (f, l) =>
        markdownCode(`${f}:${l}`),
      );
    if (statement) out.push('', statement);
  } else if (result.suspects[0]) {
    const top = result.suspects[0];
    out.push(
      `**Local divergence at #${top.index}: ${markdownCode(moduleName(top.module))}** (${localEvidence(top, result.thresholds.ratio)}, threshold ${fmt(result.thresholds.ratio)}); it does not persist downstream, so there is no change point.`,
    );
  } else {
    out.push(`**No divergence above noise** (threshold ${fmt(result.thresholds.ratio)}).`);
  }
  out.push('');

  const configDir = result.config ? path.dirname(result.config) : undefined;
  const rel = (file: string) => (configDir ? path.relative(configDir, file) || file : file);
  const runs: [string, DiagnosisResult['runs']['target'] | undefined][] = [
    ['target', result.runs.target],
    ['reference', result.runs.reference],
    ['reference (low precision)', result.runs.referenceLowPrecision],
  ];
  out.push(
    table(
      ['run', 'model', 'engine', 'provider', 'optimization', 'precision', 'capture'],
      runs
        .filter((run): run is [string, DiagnosisResult['runs']['target']] => run[1] !== undefined)
        .map(([role, info]) => [
          role,
          markdownCode(rel(info.model)),
          runTerms(info).engine,
          info.executionProvider,
          runTerms(info).optimization,
          info.precision +
            (info.keptFloat32?.length ? ` (float32: ${info.keptFloat32.join(', ')})` : ''),
          runTerms(info).capture,
        ]),
    ),
    '',
    `Noise: ${describeNoise(result.noise)}.`,
    '',
  );

  if (options.chartImage) {
    out.push(`![Divergence chart](${linkDestination(options.chartImage)})`, '');
  }

  if (result.suspects.length) {
    const withKernel = result.suspects.some((s) => describeKernel(s) !== undefined);
    const headers = ['rank', 'module', 'op', 'ratio', 'own ratio', 'own jump', 'confidence'];
    headers.push('source');
    if (withKernel) headers.push('kernel');
    out.push(
      '### Suspects',
      '',
      table(
        headers,
        result.suspects.map((s) => {
          const kernel = describeKernel(s);
          return [
            String(s.rank),
            `${markdownCode(moduleName(s.module))} #${s.index}`,
            `${markdownCode(s.op)} ${markdownCode(s.node)}`,
            fmt(s.ratio),
            s.ownRatio === undefined ? '' : fmt(s.ownRatio),
            `×${fmt(Math.exp(s.ownJump))}`,
            s.confidence.toFixed(2),
            s.source
              ? `${markdownCode(`${s.source.file}:${s.source.line}`)} ${markdownText(s.source.symbol)}`
              : '',
            ...(withKernel ? [kernel ? markdownCode(kernel) : ''] : []),
          ];
        }),
      ),
      '',
    );
  }

  if (annotations.length) {
    out.push(
      '### Annotations',
      '',
      table(
        ['cause', 'location', 'module', 'source', 'note'],
        annotations.map((a) => [
          markdownCode(a.cause),
          a.location,
          markdownCode(moduleName(a.module)),
          a.source ? markdownCode(`${a.source.file}:${a.source.line}`) : '',
          markdownText(a.note),
        ]),
      ),
      '',
    );
  }

  if (result.unmatched.length) {
    out.push(
      `### Unmatched records (${result.unmatched.length})`,
      '',
      table(
        ['side', 'key', 'node', 'reason'],
        result.unmatched.map((u) => [
          u.side,
          markdownCode(u.key),
          markdownCode(u.node),
          markdownText(u.reason),
        ]),
      ),
      '',
    );
  }

  if (result.warnings.length) {
    out.push('### Warnings', '', ...result.warnings.map((w) => `- ${markdownText(w)}`), '');
  }

  const runTimes = Object.entries(result.timings.runsMs)
    .filter((entry): entry is [string, number] => typeof entry[1] === 'number')
    .map(([run, ms]) => `${run} ${(ms / 1000).toFixed(2)} s`);
  out.push(
    `<sub>${result.series.length} module outputs and ${result.comparedOps} ops compared in ` +
      `${(result.timings.totalMs / 1000).toFixed(2)} s${runTimes.length ? ` (${runTimes.join(', ')})` : ''}.</sub>`,
    '',
  );
  return out.join('\n');
}
