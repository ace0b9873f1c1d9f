import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { EkkaError } from '../errors';
import { readJsonFile } from '../jsonFile';
import type { MappingRule } from '../mapping/mappingRule';
import {
  existingFile,
  resolveConfig,
  validateDiagnosisContent,
  type DiagnosisConfig,
  type RunConfig,
  type Thresholds,
} from './config';

/** A run captured from a framework: the PyTorch helper now, or a dump made elsewhere. */
export type CapturedRunConfig =
  | {
      kind: 'pytorch';
      /** Absolute path of the factory file, and the function in it. */
      factoryFile: string;
      factoryFunction: string;
      dtype: 'float32' | 'bfloat16' | 'float16';
      device: 'auto' | 'cpu' | 'cuda';
      python?: string;
      timeoutMs?: number;
      /** A HuggingFace model directory (then factoryFile is that folder, for labels only). */
      hfModel?: { directory: string; tokenIds: number[] };
    }
  | { kind: 'dump'; dump: string }
  /** An ONNX model paired with a captured run through the mapping (node scopes are module paths). */
  | { kind: 'onnx'; options: RunConfig; input: string };

export interface MappingConfig {
  preset: string;
  rules: MappingRule[];
  ignore: string[];
  targetCallTokens?: [number, number][];
}

/** A diagnosis between two captured runs (different implementations, paired by the mapping). */
export interface CapturedDiagnosisConfig {
  kind: 'captured';
  file?: string;
  baseDir: string;
  name?: string;
  target: CapturedRunConfig;
  reference: CapturedRunConfig;
  referenceLowPrecision?: CapturedRunConfig;
  /** True when the low-precision reference was not written but derived from the reference. */
  derivedLowPrecision?: boolean;
  mapping: MappingConfig;
  thresholds: Thresholds;
}

export type AnyDiagnosisConfig = DiagnosisConfig | CapturedDiagnosisConfig;

export function isCaptured(config: AnyDiagnosisConfig): config is CapturedDiagnosisConfig {
  return 'kind' in config && config.kind === 'captured';
}

interface RawRun {
  kind?: string;
  factory?: string;
  dtype?: 'float32' | 'bfloat16' | 'float16';
  device?: 'auto' | 'cpu' | 'cuda';
  python?: string;
  dump?: string;
  hfModel?: string;
  tokenIds?: number[];
  timeoutSeconds?: number;
  model?: string;
}

async function existingFolder(baseDir: string, relative: string, key: string, file?: string) {
  const absolute = path.resolve(baseDir, relative);
  const stat = await fs.stat(absolute).catch(() => undefined);
  if (!stat?.isDirectory()) {
    throw new EkkaError(
      'config',
      `${key}: folder "${relative}" not found (looked for ${absolute})`,
      file,
    );
  }
  return absolute;
}

async function resolveRun(
  raw: RawRun,
  key: string,
  baseDir: string,
  input: string | undefined,
  file?: string,
): Promise<CapturedRunConfig> {
  if (raw.kind === undefined || raw.kind === 'onnx') {
    if (!input) {
      throw new EkkaError('config', `${key}: an ONNX run needs the top-level "input" file`, file);
    }
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    const { kind: _kind, model, ...options } = raw as RawRun & { model: string };
    return {
      kind: 'onnx',
      options: {
        ...(options as Omit<RunConfig, 'kind' | 'model'>),
        kind: 'onnx',
        model: await existingFile(baseDir, model, `${key}.model`, file),
        optimization: (options as Partial<RunConfig>).optimization ?? 'disabled',
        executionProvider: (options as Partial<RunConfig>).executionProvider ?? 'auto',
      },
      input,
    };
  }
  if (raw.kind === 'dump') {
    return { kind: 'dump', dump: await existingFolder(baseDir, raw.dump!, `${key}.dump`, file) };
  }
  if (raw.hfModel) {
    const directory = await existingFolder(baseDir, raw.hfModel, `${key}.hfModel`, file);
    return {
      kind: 'pytorch',
      factoryFile: directory,
      factoryFunction: 'AutoModelForCausalLM',
      hfModel: { directory, tokenIds: raw.tokenIds! },
      dtype: raw.dtype ?? 'float32',
      device: raw.device ?? 'auto',
      ...(raw.python ? { python: interpreterPath(baseDir, raw.python) } : {}),
      ...(raw.timeoutSeconds ? { timeoutMs: raw.timeoutSeconds * 1000 } : {}),
    };
  }
  const [factoryPath, factoryFunction] = raw.factory!.split(':') as [string, string];
  return {
    kind: 'pytorch',
    factoryFile: await existingFile(baseDir, factoryPath, `${key}.factory`, file),
    factoryFunction,
    dtype: raw.dtype ?? 'float32',
    device: raw.device ?? 'auto',
    ...(raw.python ? { python: interpreterPath(baseDir, raw.python) } : {}),
    ...(raw.timeoutSeconds ? { timeoutMs: raw.timeoutSeconds * 1000 } : {}),
  };
}

/** A path with a folder in it is relative to the config; a bare name is looked up on the PATH. */
function interpreterPath(baseDir: string, python: string): string {
  return python.includes('/') || python.includes(path.sep) ? path.resolve(baseDir, python) : python;
}

/** Validates a diagnosis of captured runs and resolves its paths against `baseDir`. */
export async function resolveCapturedConfig(
  content: unknown,
  baseDir: string,
  file?: string,
): Promise<CapturedDiagnosisConfig> {
  const raw = validateDiagnosisContent(content, file) as {
    name?: string;
    target: RawRun;
    reference: RawRun;
    referenceLowPrecision?: RawRun | false;
    input?: string;
    mapping?: Partial<MappingConfig> & { preset?: string };
    thresholds: Thresholds;
  };
  const input = raw.input ? await existingFile(baseDir, raw.input, 'input', file) : undefined;
  const config: CapturedDiagnosisConfig = {
    kind: 'captured',
    file,
    baseDir,
    target: await resolveRun(raw.target, 'target', baseDir, input, file),
    reference: await resolveRun(raw.reference, 'reference', baseDir, input, file),
    mapping: {
      preset: raw.mapping?.preset ?? 'llama',
      rules: raw.mapping?.rules ?? [],
      ignore: raw.mapping?.ignore ?? [],
      ...(raw.mapping?.targetCallTokens ? { targetCallTokens: raw.mapping.targetCallTokens } : {}),
    },
    thresholds: raw.thresholds,
  };
  for (const [i, window] of (config.mapping.targetCallTokens ?? []).entries()) {
    if (window[0] >= window[1]) {
      throw new EkkaError(
        'config',
        `mapping.targetCallTokens[${i}]: start must be below end`,
        file,
      );
    }
  }
  if (raw.name) config.name = raw.name;
  if (raw.referenceLowPrecision) {
    config.referenceLowPrecision = await resolveRun(
      raw.referenceLowPrecision,
      'referenceLowPrecision',
      baseDir,
      input,
      file,
    );
  } else if (raw.referenceLowPrecision === undefined) {
    // Measured noise is the default, as for ONNX runs: a PyTorch reference at float32 runs again
    // at the PyTorch target's dtype.
    const { target, reference } = config;
    if (
      target.kind === 'pytorch' &&
      target.dtype !== 'float32' &&
      reference.kind === 'pytorch' &&
      reference.dtype === 'float32'
    ) {
      config.referenceLowPrecision = { ...reference, dtype: target.dtype };
      config.derivedLowPrecision = true;
    }
  }
  return config;
}

/** Reads an ekka.json of either kind: ONNX runs, or captured runs paired by the mapping. */
export async function loadDiagnosis(file: string): Promise<AnyDiagnosisConfig> {
  const content = await readJsonFile(file, 'config');
  const baseDir = path.dirname(path.resolve(file));
  const runs = content as Record<string, { kind?: unknown } | undefined> | null;
  // Any captured run makes it a cross-framework diagnosis; ONNX runs then join through the mapping.
  const captured = ['target', 'reference', 'referenceLowPrecision'].some((key) => {
    const kind = runs?.[key]?.kind;
    return kind === 'pytorch' || kind === 'dump';
  });
  return captured
    ? resolveCapturedConfig(content, baseDir, file)
    : resolveConfig(content, baseDir, file);
}
