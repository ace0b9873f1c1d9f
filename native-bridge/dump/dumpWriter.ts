import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../atomicWrite';
import { EkkaError, describeCause } from '../errors';
import type { CaptureInfo, CapturedRecord } from '../runners/capturedRecord';
import {
  DUMP_FORMAT,
  DUMP_VERSION,
  MANIFEST_FILE,
  MAX_MANIFEST_BYTES,
  MAX_RECORDS,
  recordLabel,
  type DumpManifest,
  type ManifestRecord,
} from './manifest';
import {
  encodeTensorValues,
  safetensorsDType,
  writeSafetensorsFile,
  type TensorToWrite,
} from './safetensors';

export interface WriteDumpOptions {
  /**
   * Largest safetensors file in bytes, header aside; a single larger tensor gets a file of its own.
   * Also bounds the writer's memory: one file's tensors are held until the file is written.
   */
  maxFileBytes?: number;
  /** What the run was fed: an input file's path, or a small description. */
  input?: string | Record<string, unknown>;
  /**
   * Replace a dump already in the folder. Its manifest is removed first, so until the new manifest
   * appears a reader finds no dump rather than a mix of old and new files.
   */
  overwrite?: boolean;
}

export const DEFAULT_MAX_FILE_BYTES = 512 * 2 ** 20;

const TENSOR_FILE = /^tensors-\d{5,}\.safetensors$/;

function tensorFileName(index: number): string {
  return `tensors-${String(index).padStart(5, '0')}.safetensors`;
}

/** The manifest as text: the header fields indented, then one record per line. */
export function formatManifest(manifest: DumpManifest): string {
  const { records, ...head } = manifest;
  const fields = JSON.stringify(head, null, 2).slice(0, -2);
  const lines = records.map((record) => `    ${JSON.stringify(record)}`).join(',\n');
  return `${fields},\n  "records": [${records.length ? `\n${lines}\n  ` : ''}]\n}\n`;
}

function checkCount(value: unknown, minimum: number): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= minimum;
}

/**
 * A record's fields as the manifest will hold them, after the checks the reader makes, so a dump
 * this writes is one the reader accepts.
 */
function checkRecord(
  record: CapturedRecord,
  label: string,
  fail: (message: string) => never,
): void {
  if (typeof record.name !== 'string' || record.name === '') fail(`${label}: name is empty`);
  if (record.name === '__metadata__') fail(`${label}: the name is reserved by safetensors`);
  if (!checkCount(record.seq, 0)) fail(`${label}: seq ${record.seq} is not a non-negative integer`);
  if (!checkCount(record.call, 1)) fail(`${label}: call ${record.call} is not a positive integer`);
  if (record.rank !== undefined && !checkCount(record.rank, 0)) {
    fail(`${label}: rank ${record.rank} is not a non-negative integer`);
  }
  if (record.shape.length > 64)
    fail(`${label}: shape has ${record.shape.length} dimensions, over 64`);
  let count = 1;
  record.shape.forEach((dim, index) => {
    if (!checkCount(dim, 0))
      fail(`${label}: shape[${index}] is ${dim}, not a non-negative integer`);
    count *= dim;
  });
  if (record.data.length !== count) {
    fail(
      `${label}: ${record.data.length} values, but shape [${record.shape.join(', ')}] holds ${count}`,
    );
  }
  if (
    record.source &&
    (typeof record.source.file !== 'string' ||
      record.source.file === '' ||
      !checkCount(record.source.line, 1))
  ) {
    fail(`${label}: source must be a file and a line from 1`);
  }
}

/** The manifest's record: fields in the documented order, optional ones only when present. */
function manifestRecord(record: CapturedRecord, file: string, key: string): ManifestRecord {
  return {
    name: record.name,
    seq: record.seq,
    kind: 'module-output',
    module: record.module,
    class: record.className,
    call: record.call,
    output: record.output,
    ...(record.rank !== undefined ? { rank: record.rank } : {}),
    dtype: record.dtype,
    shape: record.shape.slice(),
    file,
    key,
    ...(record.source ? { source: { file: record.source.file, line: record.source.line } } : {}),
    ...(record.inputs ? { inputs: record.inputs.slice() } : {}),
    ...(record.caller !== undefined ? { caller: record.caller } : {}),
    ...(record.arguments ? { arguments: { ...record.arguments } } : {}),
  };
}

/**
 * Writes captured records as a dump (docs/dump-format.md): tensors in their captured dtype (the
 * widened values are narrowed back; fp16/bf16 values that came from those types round-trip
 * exactly), grouped into safetensors files of at most `maxFileBytes`, each written under a
 * temporary name and renamed; the manifest is written last, so a dump is complete once it has
 * one. `info.records` is not used: the manifest counts what was written. Records may arrive as a
 * stream; they are held only until their file is written. On failure the files written so far are
 * removed. Returns the manifest.
 */
export async function writeDump(
  dir: string,
  info: CaptureInfo,
  records: Iterable<CapturedRecord> | AsyncIterable<CapturedRecord>,
  options: WriteDumpOptions = {},
): Promise<DumpManifest> {
  const fail: (message: string) => never = (message) => {
    throw new EkkaError('input', message, dir);
  };
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  if (!(maxFileBytes > 0)) fail(`maxFileBytes ${maxFileBytes} must be positive`);
  const writeError = (cause: unknown): EkkaError =>
    cause instanceof EkkaError
      ? cause
      : new EkkaError('runtime', `cannot write the dump (${describeCause(cause)})`, dir);
  await fs.mkdir(dir, { recursive: true }).catch((cause: unknown) => {
    throw writeError(cause);
  });
  const manifestPath = path.join(dir, MANIFEST_FILE);
  const exists = await fs.stat(manifestPath).then(
    () => true,
    () => false,
  );
  if (exists) {
    if (!options.overwrite)
      fail(`already holds a dump (${MANIFEST_FILE}); pass overwrite to replace it`);
    await fs.rm(manifestPath).catch((cause: unknown) => {
      throw writeError(cause);
    });
  }

  const manifestRecords: ManifestRecord[] = [];
  const names = new Set<string>();
  const written: string[] = [];
  let pending: TensorToWrite[] = [];
  let pendingBytes = 0;
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return;
    const name = tensorFileName(written.length);
    const file = path.join(dir, name);
    written.push(file);
    await writeSafetensorsFile(file, pending);
    pending = [];
    pendingBytes = 0;
  };

  try {
    let index = 0;
    for await (const record of records) {
      const label = recordLabel(index, record.name);
      if (index >= MAX_RECORDS) fail(`more than ${MAX_RECORDS} records`);
      checkRecord(record, label, fail);
      if (names.has(record.name)) fail(`${label}: name used by an earlier record`);
      names.add(record.name);
      const dtype = safetensorsDType(record.dtype);
      if (!dtype)
        fail(`${label}: dtype ${JSON.stringify(record.dtype)} cannot be stored in a dump`);
      const bytes = encodeTensorValues(dtype, record.data, label, dir);
      if (pending.length > 0 && pendingBytes + bytes.length > maxFileBytes) await flush();
      pending.push({ name: record.name, dtype, shape: record.shape.slice(), bytes });
      pendingBytes += bytes.length;
      manifestRecords.push(manifestRecord(record, tensorFileName(written.length), record.name));
      index++;
    }
    await flush();

    const manifest: DumpManifest = {
      format: DUMP_FORMAT,
      version: DUMP_VERSION,
      framework: info.framework,
      model: info.model,
      records: manifestRecords,
    };
    if (info.frameworkVersion !== undefined) manifest.frameworkVersion = info.frameworkVersion;
    if (info.device !== undefined) manifest.device = info.device;
    if (info.dtype !== undefined) manifest.dtype = info.dtype;
    if (options.input !== undefined) manifest.input = options.input;
    const text = formatManifest(manifest);
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_MANIFEST_BYTES) {
      fail(
        `the manifest would be ${bytes} bytes, over the ${MAX_MANIFEST_BYTES / 2 ** 20} MiB limit`,
      );
    }
    await writeFileAtomic(manifestPath, text);

    // Files of an overwritten dump that the new one does not reuse.
    const keep = new Set(written.map((file) => path.basename(file)));
    for (const name of await fs.readdir(dir)) {
      if (TENSOR_FILE.test(name) && !keep.has(name))
        await fs.rm(path.join(dir, name), { force: true });
    }
    return manifest;
  } catch (cause) {
    await Promise.all(written.map((file) => fs.rm(file, { force: true })));
    throw writeError(cause);
  }
}
