import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileAtomic } from '../atomicWrite';
import { loadDiagnosis } from '../diagnosis/capturedConfig';
import { resolveConfig, type DiagnosisConfig } from '../diagnosis/config';
import { confineToFolder } from '../diagnosis/confine';
import { diagnose } from '../diagnosis/diagnose';
import type { DiagnosisResult } from '../diagnosis/result';
import { EkkaError, describeCause } from '../errors';
import { loadReportAssets, readReportAnnotations, renderHtmlReport } from '../report/htmlReport';
import { formatReport } from './report';

const USAGE = `Usage:
  ekka diagnose <ekka.json> [--workspace DIR] [--python PATH] [--json out.json]
                [--html report.html] [--verbose] [--fail-on-divergence]
  ekka diagnose --target t.onnx --reference r.onnx [--reference-lowp r16.onnx] --inputs in.json
                [--source-root DIR]... [--source-entry file.py:Class]
                [--target-optimization LEVEL] [--reference-optimization LEVEL]
                [--json out.json] [--html report.html] [--verbose] [--fail-on-divergence]

Exit status: 0 diagnosis done, 1 divergence found (with --fail-on-divergence), 2 bad input or error.`;

const OPTIONS = {
  json: { type: 'string' },
  html: { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
  'fail-on-divergence': { type: 'boolean' },
  target: { type: 'string' },
  reference: { type: 'string' },
  'reference-lowp': { type: 'string' },
  inputs: { type: 'string' },
  'source-root': { type: 'string', multiple: true },
  'source-entry': { type: 'string' },
  'target-optimization': { type: 'string' },
  'reference-optimization': { type: 'string' },
  'execution-provider': { type: 'string' },
  workspace: { type: 'string' },
  python: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<
  typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>
>['values'];

/** Builds an ekka.json-shaped object from flags; the schema validates it like a file. */
async function configFromFlags(values: Values, cwd: string): Promise<DiagnosisConfig> {
  const missing = (['target', 'reference', 'inputs'] as const).filter((k) => !values[k]);
  if (missing.length) {
    throw new EkkaError('config', `missing ${missing.map((k) => `--${k}`).join(', ')}\n${USAGE}`);
  }
  const run = (model: string, optimization?: string) => ({
    model,
    ...(optimization ? { optimization } : {}),
    ...(values['execution-provider'] ? { executionProvider: values['execution-provider'] } : {}),
  });
  const content: Record<string, unknown> = {
    target: run(values.target!, values['target-optimization']),
    reference: run(values.reference!, values['reference-optimization']),
    input: values.inputs,
  };
  if (values['reference-lowp'])
    content.referenceLowPrecision = run(values['reference-lowp'], values['reference-optimization']);
  if (values['source-root'] || values['source-entry']) {
    content.source = {
      ...(values['source-entry'] ? { entry: values['source-entry'] } : {}),
      searchPaths: values['source-root'] ?? [],
    };
  }
  const config = await resolveConfig(content, cwd);
  // Results name source files relative to the first source root when one is given.
  if (values['source-root']?.[0]) config.baseDir = path.resolve(cwd, values['source-root'][0]);
  return config;
}

/**
 * Writes the self-contained HTML report, with the annotations of the nearest annotations file;
 * one that cannot be read becomes a warning in the report.
 */
async function writeHtmlReport(
  result: DiagnosisResult,
  out: string,
  given: string,
  annotationsFrom: string,
): Promise<void> {
  const assets = await loadReportAssets();
  const { annotations, warnings } = await readReportAnnotations(annotationsFrom, result);
  for (const warning of warnings) process.stdout.write(`warning: ${warning}\n`);
  const html = renderHtmlReport(
    warnings.length ? { ...result, warnings: [...result.warnings, ...warnings] } : result,
    annotations,
    assets,
  );
  try {
    // Atomic: a failed write leaves an earlier report as it was.
    await writeFileAtomic(out, html);
  } catch (cause) {
    throw new EkkaError('config', `cannot write the HTML report: ${describeCause(cause)}`, given);
  }
}

export async function main(argv: string[], cwd = process.cwd()): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
  } catch (cause) {
    process.stderr.write(`ekka: ${(cause as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const [command, ...rest] = positionals;
  if (command !== 'diagnose') {
    process.stderr.write(`ekka: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  try {
    if (rest.length > 1)
      throw new EkkaError('config', `expected one ekka.json, got ${rest.length} files`);
    const config = rest[0]
      ? await loadDiagnosis(path.resolve(cwd, rest[0]))
      : await configFromFlags(values, cwd);
    if (values.workspace) await confineToFolder(config, path.resolve(cwd, values.workspace));
    const result = await diagnose(
      config,
      {},
      undefined,
      values.python ? { python: path.resolve(cwd, values.python) } : {},
    );
    process.stdout.write(`${formatReport(result, cwd, values.verbose)}\n`);
    if (values.json) {
      const out = path.resolve(cwd, values.json);
      try {
        await writeFileAtomic(out, `${JSON.stringify(result, null, 2)}\n`);
      } catch (cause) {
        throw new EkkaError(
          'config',
          `cannot write the JSON result: ${describeCause(cause)}`,
          values.json,
        );
      }
      process.stdout.write(`Wrote ${path.relative(cwd, out)}\n`);
    }
    if (values.html) {
      const annotationsFrom = config.file ? path.dirname(config.file) : config.baseDir;
      await writeHtmlReport(result, path.resolve(cwd, values.html), values.html, annotationsFrom);
      process.stdout.write(`Wrote ${path.relative(cwd, path.resolve(cwd, values.html))}\n`);
    }
    return values['fail-on-divergence'] && (result.changePoint || result.suspects.length > 0)
      ? 1
      : 0;
  } catch (cause) {
    if (cause instanceof EkkaError) {
      process.stderr.write(`ekka: ${cause.message}\n`);
      return 2;
    }
    process.stderr.write(`ekka: internal error: ${(cause as Error).stack ?? String(cause)}\n`);
    return 2;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
