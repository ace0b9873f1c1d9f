import Ajv, { type ErrorObject } from 'ajv';
import { closest } from 'fastest-levenshtein';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { EkkaError } from '../errors';
import { readJsonFile } from '../jsonFile';
import type { CaptureMode, OnnxRunOptions } from '../runners/onnxRunner';
import type { SourceConfig } from '../source/pythonLocator';
import schema from './ekka.schema.json';

/** One run as written in ekka.json, after defaults. */
export interface RunConfig extends OnnxRunOptions {
  kind: 'onnx';
}

export interface Thresholds {
  ratio: number;
  localRatio: number;
  noiseFloorFactor: number;
  minRun: number;
  penaltyScale: number;
  lookback: number;
  maxSuspects: number;
}

/** A validated diagnosis with every path made absolute. */
export interface DiagnosisConfig {
  /** The ekka.json file, or undefined for a diagnosis assembled from command-line flags. */
  file?: string;
  /** Folder that relative paths in results are written against. */
  baseDir: string;
  name?: string;
  target: RunConfig;
  reference: RunConfig;
  referenceLowPrecision?: RunConfig;
  /** True when the low-precision reference was not written but derived from the reference. */
  derivedLowPrecision?: boolean;
  input: string;
  source?: SourceConfig;
  thresholds: Thresholds;
}

// strictRequired off: the run's kind-dependent `required` lists sit in if/then branches.
const ajv = new Ajv({
  allErrors: true,
  useDefaults: true,
  strict: true,
  strictRequired: false,
  allowUnionTypes: true,
});
const validateSchema = ajv.compile(schema);

/** Property names the schema allows at a JSON pointer, for "did you mean" hints. */
function knownKeys(instancePath: string): string[] {
  const segments = instancePath.split('/').filter(Boolean);
  let node: Record<string, unknown> = schema as Record<string, unknown>;
  for (const segment of segments) {
    const properties = node.properties as Record<string, Record<string, unknown>> | undefined;
    let next = properties?.[segment];
    if (next && typeof next.$ref === 'string') {
      next = (schema.definitions as Record<string, Record<string, unknown>>)[
        next.$ref.split('/').pop()!
      ];
    }
    if (!next) return [];
    node = next;
  }
  return Object.keys((node.properties as object | undefined) ?? {});
}

function describeSchemaError(error: ErrorObject): string {
  const where = error.instancePath || '(top level)';
  if (error.keyword === 'additionalProperty' || error.keyword === 'additionalProperties') {
    const key = (error.params as { additionalProperty: string }).additionalProperty;
    const candidates = knownKeys(error.instancePath);
    const hint = candidates.length ? ` (did you mean "${closest(key, candidates)}"?)` : '';
    return `${where}: unknown key "${key}"${hint}`;
  }
  if (error.keyword === 'enum') {
    const allowed = (error.params as { allowedValues: unknown[] }).allowedValues;
    return `${where}: must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  if (error.keyword === 'required') {
    return `${where}: missing required key "${(error.params as { missingProperty: string }).missingProperty}"`;
  }
  return `${where}: ${error.message ?? error.keyword}`;
}

interface RawConfig {
  name?: string;
  target: RunConfig;
  reference: RunConfig;
  referenceLowPrecision?: RunConfig | false;
  input?: string;
  source?: { entry?: string; searchPaths?: string[] };
  capture?: CaptureMode;
  thresholds: Thresholds;
}

/**
 * Checks parsed ekka.json content against the schema (filling defaults) and returns a copy; every
 * violation is listed in one error naming the file.
 */
export function validateDiagnosisContent(content: unknown, file?: string): Record<string, unknown> {
  const raw = structuredClone(content) as Record<string, unknown>;
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) raw.thresholds ??= {};
  if (!validateSchema(raw)) {
    const messages = (validateSchema.errors ?? [])
      // An if/then failure repeats the `required` error inside it.
      .filter((error) => error.keyword !== 'if')
      .map(describeSchemaError);
    throw new EkkaError(
      'config',
      `invalid diagnosis:\n  ${[...new Set(messages)].join('\n  ')}`,
      file,
    );
  }
  return raw;
}

/** Validates parsed ekka.json content and resolves its paths against `baseDir`. */
export async function resolveConfig(
  content: unknown,
  baseDir: string,
  file?: string,
): Promise<DiagnosisConfig> {
  const config = validateDiagnosisContent(content, file) as unknown as RawConfig;
  if (config.input === undefined) {
    throw new EkkaError(
      'config',
      'invalid diagnosis:\n  (top level): missing required key "input"',
      file,
    );
  }
  for (const key of ['target', 'reference', 'referenceLowPrecision'] as const) {
    const kind = (config[key] as { kind?: string } | undefined)?.kind;
    if (kind && kind !== 'onnx') {
      throw new EkkaError(
        'config',
        `${key}.kind "${kind}": ONNX runs and captured runs (pytorch, dump) cannot be mixed in one diagnosis`,
        file,
      );
    }
  }
  const resolveRun = async (run: RunConfig, key: string): Promise<RunConfig> => ({
    ...run,
    capture: config.capture ?? 'partitioned',
    model: await existingFile(baseDir, run.model, `${key}.model`, file),
  });
  const resolved: DiagnosisConfig = {
    file,
    baseDir,
    target: await resolveRun(config.target, 'target'),
    reference: await resolveRun(config.reference, 'reference'),
    input: await existingFile(baseDir, config.input, 'input', file),
    thresholds: config.thresholds,
  };
  if (config.name) resolved.name = config.name;
  if (config.referenceLowPrecision) {
    resolved.referenceLowPrecision = await resolveRun(
      config.referenceLowPrecision,
      'referenceLowPrecision',
    );
  } else if (config.referenceLowPrecision === undefined) {
    // Measured noise is the default: the reference again at the target's precision, when the
    // target runs below float32 and the reference does not.
    const precision = resolved.target.precision;
    if (
      precision &&
      precision !== 'float32' &&
      (resolved.reference.precision ?? 'float32') === 'float32'
    ) {
      resolved.referenceLowPrecision = { ...resolved.reference, precision };
      resolved.derivedLowPrecision = true;
    }
  }
  if (config.source) {
    const source: SourceConfig = { searchPaths: [] };
    if (config.source.entry) {
      const [entryPath, entryClass] = config.source.entry.split(':') as [string, string];
      source.entryFile = await existingFile(baseDir, entryPath, 'source.entry', file);
      source.entryClass = entryClass;
      source.searchPaths.push(path.dirname(source.entryFile));
    }
    for (const folder of config.source.searchPaths ?? [])
      source.searchPaths.push(path.resolve(baseDir, folder));
    resolved.source = source;
  }
  return resolved;
}

export async function existingFile(
  baseDir: string,
  relative: string,
  key: string,
  file?: string,
): Promise<string> {
  const absolute = path.resolve(baseDir, relative);
  try {
    const stat = await fs.stat(absolute);
    if (!stat.isFile()) throw new EkkaError('config', `${key}: "${relative}" is not a file`, file);
  } catch (cause) {
    if (cause instanceof EkkaError) throw cause;
    throw new EkkaError(
      'config',
      `${key}: file "${relative}" not found (looked for ${absolute})`,
      file,
    );
  }
  return absolute;
}

/** Reads and validates an ekka.json file. */
export async function loadConfig(file: string): Promise<DiagnosisConfig> {
  const content = await readJsonFile(file, 'config');
  return resolveConfig(content, path.dirname(path.resolve(file)), file);
}

/** The warning of a diagnosis whose low-precision reference was derived, not written. */
export function derivedLowPrecisionNote(precision: string): string {
  return `no referenceLowPrecision given: the reference also ran at ${precision} to measure the noise ("referenceLowPrecision": false divides by the analytic floor instead)`;
}
