import Ajv, { type ErrorObject } from 'ajv';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { EkkaError, describeCause } from '../errors';
import {
  SAFETENSORS_DTYPES,
  findDuplicateJsonKey,
  safetensorsDType,
  type TensorEntry,
} from './safetensors';

/**
 * The manifest of a dump (format version 1, docs/dump-format.md): what the run was, and for every
 * captured module output where its tensor lies (a safetensors file in the dump folder and the
 * tensor's key in it).
 */

export const MANIFEST_FILE = 'manifest.json';
export const DUMP_FORMAT = 'ekka-dump';
export const DUMP_VERSION = 1;
/** A manifest is read whole; these bound what a hostile one can make us allocate. */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
export const MAX_RECORDS = 1_000_000;

/** Record dtypes, by onnxruntime's names (`float32`, `bfloat16`, `int64`, ...). */
export const RECORD_DTYPES: readonly string[] = Object.values(SAFETENSORS_DTYPES).map(
  (info) => info.name,
);

/** One module output in the manifest; its values are tensor `key` of safetensors file `file`. */
export interface ManifestRecord {
  /** Unique in the dump: `${module}#${call}/${output}`, plus `@rank${rank}` for a shard. */
  name: string;
  seq: number;
  kind: 'module-output';
  module: string;
  class: string;
  call: number;
  output: string;
  rank?: number;
  dtype: string;
  shape: number[];
  /** Relative to the dump folder, `/`-separated. */
  file: string;
  key: string;
  source?: { file: string; line: number };
  /** Names of the records the value was computed from (CapturedRecord.inputs). */
  inputs?: string[];
  /** For an input record: the module whose code computed it. */
  caller?: string;
  /** For a module output: its inputs that are other records, by input path. */
  arguments?: Record<string, string>;
}

export interface DumpManifest {
  format: typeof DUMP_FORMAT;
  version: typeof DUMP_VERSION;
  framework: string;
  model: string;
  frameworkVersion?: string;
  device?: string;
  dtype?: string;
  /** What the run was fed: an input file's path, or a small description. */
  input?: string | Record<string, unknown>;
  records: ManifestRecord[];
}

const nonNegativeInteger = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER };

const recordSchema = {
  type: 'object',
  required: [
    'name',
    'seq',
    'kind',
    'module',
    'class',
    'call',
    'output',
    'dtype',
    'shape',
    'file',
    'key',
  ],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1 },
    seq: nonNegativeInteger,
    kind: { const: 'module-output' },
    module: { type: 'string' },
    class: { type: 'string' },
    call: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    output: { type: 'string' },
    rank: nonNegativeInteger,
    dtype: { enum: RECORD_DTYPES },
    shape: { type: 'array', maxItems: 64, items: nonNegativeInteger },
    file: { type: 'string', minLength: 1 },
    key: { type: 'string', minLength: 1 },
    inputs: { type: 'array', maxItems: MAX_RECORDS, items: { type: 'string', minLength: 1 } },
    caller: { type: 'string' },
    arguments: {
      type: 'object',
      maxProperties: 4096,
      additionalProperties: { type: 'string', minLength: 1 },
    },
    source: {
      type: 'object',
      required: ['file', 'line'],
      additionalProperties: false,
      properties: {
        file: { type: 'string', minLength: 1 },
        line: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
      },
    },
  },
};

const manifestSchema = {
  type: 'object',
  required: ['format', 'version', 'framework', 'model', 'records'],
  additionalProperties: false,
  properties: {
    format: { const: DUMP_FORMAT },
    version: { const: DUMP_VERSION },
    framework: { type: 'string', minLength: 1 },
    model: { type: 'string' },
    frameworkVersion: { type: 'string' },
    device: { type: 'string' },
    dtype: { type: 'string' },
    input: { type: ['string', 'object'] },
    records: { type: 'array', maxItems: MAX_RECORDS, items: recordSchema },
  },
};

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });
const validateManifest = ajv.compile<DumpManifest>(manifestSchema);

/** `records[3] "model.layers.0.mlp#1/"`: how every message points at a record. */
export function recordLabel(index: number, name: unknown): string {
  return typeof name === 'string'
    ? `records[${index}] ${JSON.stringify(name)}`
    : `records[${index}]`;
}

/** A JSON pointer into the manifest as a reader would say it: `records[3] "name": shape/1`. */
function describeLocation(pointer: string[], value: unknown): string {
  if (pointer[0] === 'records' && pointer[1] !== undefined) {
    const index = Number(pointer[1]);
    const records = (value as { records?: unknown[] }).records;
    const record = records?.[index] as { name?: unknown } | undefined;
    const label = recordLabel(index, record?.name);
    return pointer.length > 2 ? `${label}: ${pointer.slice(2).join('/')}` : label;
  }
  return pointer.length > 0 ? pointer.join('/') : '(top level)';
}

function describeSchemaError(error: ErrorObject, value: unknown): string {
  const pointer = error.instancePath
    .split('/')
    .slice(1)
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'required') {
    return `${describeLocation(pointer, value)}: missing ${JSON.stringify(params.missingProperty)}`;
  }
  if (error.keyword === 'additionalProperties') {
    return `${describeLocation(pointer, value)}: unexpected field ${JSON.stringify(params.additionalProperty)}`;
  }
  if (error.keyword === 'enum') {
    return `${describeLocation(pointer, value)} must be one of ${RECORD_DTYPES.join(', ')}`;
  }
  if (error.keyword === 'const') {
    return `${describeLocation(pointer, value)} must be ${JSON.stringify(params.allowedValue)}`;
  }
  return `${describeLocation(pointer, value)} ${error.message ?? 'is invalid'}`;
}

/**
 * Validates a manifest's text: JSON without duplicate keys, the version 1 schema, at most
 * MAX_RECORDS records, names unique. `file` labels every error.
 */
export function parseManifest(text: string, file: string): DumpManifest {
  const fail: (message: string) => never = (message) => {
    throw new EkkaError('input', message, file);
  };
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (cause) {
    return fail(`not valid JSON (${describeCause(cause)})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail('not a JSON object');
  }
  const head = value as Record<string, unknown>;
  if (head.format !== DUMP_FORMAT) {
    return fail(
      `not an Ekka dump manifest (format is ${JSON.stringify(head.format)}, not "${DUMP_FORMAT}")`,
    );
  }
  if (head.version !== DUMP_VERSION) {
    return fail(
      `dump format version ${JSON.stringify(head.version)} is not supported (this reader knows version ${DUMP_VERSION})`,
    );
  }
  if (Array.isArray(head.records) && head.records.length > MAX_RECORDS) {
    return fail(`${head.records.length} records, over the limit of ${MAX_RECORDS}`);
  }
  const duplicate = findDuplicateJsonKey(text);
  if (duplicate) {
    return fail(
      `${describeLocation(duplicate.path, value)}: key ${JSON.stringify(duplicate.key)} appears twice`,
    );
  }
  if (!validateManifest(value)) {
    const [first] = validateManifest.errors ?? [];
    return fail(first ? describeSchemaError(first, value) : 'invalid manifest');
  }
  const seen = new Map<string, number>();
  value.records.forEach((record, index) => {
    const earlier = seen.get(record.name);
    if (earlier !== undefined) {
      fail(`${recordLabel(index, record.name)}: name already used by records[${earlier}]`);
    }
    seen.set(record.name, index);
  });
  return value;
}

/** Reads `<dir>/manifest.json` (at most MAX_MANIFEST_BYTES, strict UTF-8) and validates it. */
export async function readManifest(dir: string): Promise<DumpManifest> {
  const file = path.join(dir, MANIFEST_FILE);
  const fail: (message: string) => never = (message) => {
    throw new EkkaError('input', message, file);
  };
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    return fail(
      missing ? 'file not found (is this a dump folder?)' : `cannot open (${describeCause(cause)})`,
    );
  }
  let bytes: Uint8Array;
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) fail('not a regular file');
    if (stats.size > MAX_MANIFEST_BYTES) {
      fail(`${stats.size} bytes, over the ${MAX_MANIFEST_BYTES / 2 ** 20} MiB limit`);
    }
    // Read one byte past the limit so a file that grew since stat is still caught.
    const buffer = new Uint8Array(Math.min(stats.size, MAX_MANIFEST_BYTES) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) break;
    }
    if (length > MAX_MANIFEST_BYTES) fail(`over the ${MAX_MANIFEST_BYTES / 2 ** 20} MiB limit`);
    bytes = buffer.subarray(0, length);
  } catch (cause) {
    if (cause instanceof EkkaError) throw cause;
    return fail(`cannot read (${describeCause(cause)})`);
  } finally {
    await handle.close();
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return fail('not valid UTF-8');
  }
  return parseManifest(text, file);
}

/**
 * The real path of a record's `file`, which must name a regular file inside the dump folder:
 * relative, `/`-separated, no `..` leading out, and no symlink (of the file or a folder on the way)
 * resolving outside. `realDir` is the dump folder's real path; `label` names the record in errors.
 */
export async function resolveDumpFile(
  realDir: string,
  relative: string,
  label: string,
  manifestFile: string,
): Promise<string> {
  const fail: (message: string) => never = (message) => {
    throw new EkkaError(
      'input',
      `${label}: file ${JSON.stringify(relative)} ${message}`,
      manifestFile,
    );
  };
  if (relative.includes('\0')) fail('contains a NUL character');
  if (path.posix.isAbsolute(relative) || path.win32.isAbsolute(relative)) {
    fail('is an absolute path; files are named relative to the dump folder');
  }
  if (relative.includes('\\')) fail('contains a backslash; separate folders with /');
  const normalized = path.posix.normalize(relative);
  if (normalized === '..' || normalized.startsWith('../')) fail('is outside the dump folder');
  if (normalized === '.') fail('names the dump folder itself');
  let real: string;
  try {
    real = await fs.realpath(path.join(realDir, normalized));
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    return fail(missing ? 'not found' : `cannot be resolved (${describeCause(cause)})`);
  }
  const inside = path.relative(realDir, real);
  if (
    inside === '' ||
    inside === '..' ||
    inside.startsWith(`..${path.sep}`) ||
    path.isAbsolute(inside)
  ) {
    fail(`resolves to ${real}, outside the dump folder`);
  }
  let isFile: boolean;
  try {
    isFile = (await fs.stat(real)).isFile();
  } catch (cause) {
    return fail(`cannot be read (${describeCause(cause)})`);
  }
  if (!isFile) fail('is not a regular file');
  return real;
}

/** A record's dtype and shape must be the tensor's, as its safetensors header says. */
export function checkRecordTensor(
  record: ManifestRecord,
  label: string,
  entry: TensorEntry | undefined,
  manifestFile: string,
): void {
  const fail: (message: string) => never = (message) => {
    throw new EkkaError('input', `${label}: ${message}`, manifestFile);
  };
  const where = `tensor ${JSON.stringify(record.key)} in ${record.file}`;
  if (!entry) return fail(`${where} does not exist`);
  if (safetensorsDType(record.dtype) !== entry.dtype) {
    fail(
      `dtype ${record.dtype} ≠ ${entry.dtype} (${SAFETENSORS_DTYPES[entry.dtype].name}) of ${where}`,
    );
  }
  const same =
    record.shape.length === entry.shape.length &&
    record.shape.every((dim, index) => dim === entry.shape[index]);
  if (!same) {
    fail(`shape [${record.shape.join(', ')}] ≠ [${entry.shape.join(', ')}] of ${where}`);
  }
}
