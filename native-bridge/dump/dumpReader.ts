import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { EkkaError, describeCause } from '../errors';
import type { CaptureInfo, CapturedRecord } from '../runners/capturedRecord';
import {
  MANIFEST_FILE,
  checkRecordTensor,
  readManifest,
  recordLabel,
  resolveDumpFile,
  type DumpManifest,
  type ManifestRecord,
} from './manifest';
import { SafetensorsFile } from './safetensors';

/** A dump opened and validated: every check has passed before the first tensor is read. */
export interface Dump {
  /** The folder as it was given. */
  readonly dir: string;
  readonly info: CaptureInfo;
  readonly manifest: DumpManifest;
  /** The manifest's records in execution order (by seq; ties keep manifest order), no data. */
  readonly entries: readonly ManifestRecord[];
  /**
   * Every record with its values, in `entries` order, each read from disk only when the iteration
   * reaches it. File handles are closed when the iteration ends.
   */
  records(): AsyncIterable<CapturedRecord>;
  /** One record by name. */
  readRecord(name: string): Promise<CapturedRecord>;
  /** Closes open file handles (a later read reopens them). */
  close(): Promise<void>;
}

export interface OpenDumpOptions {
  /** How many safetensors files may be open at once (least recently used are closed). */
  maxOpenFiles?: number;
}

/** How a tensor is named in a safetensors error: its key and the records that use it. */
function tensorDescriber(uses: Map<string, string[]>): (name: string) => string {
  return (name) => {
    const tensor = `tensor ${JSON.stringify(name)}`;
    const labels = uses.get(name);
    if (!labels) return tensor;
    const shown = labels.slice(0, 2).join(', ');
    const more = labels.length > 2 ? ` and ${labels.length - 2} more` : '';
    return `${tensor} (${shown}${more})`;
  };
}

/**
 * Opens a dump folder and validates all of it: the manifest (schema, limits, unique names), that
 * each record's file lies inside the folder, each safetensors header (offsets, sizes, dtypes,
 * duplicates), and that each record's dtype and shape are its tensor's. Errors are EkkaErrors
 * (kind 'input') naming the file and the record.
 */
export async function openDump(dir: string, options: OpenDumpOptions = {}): Promise<Dump> {
  const manifest = await readManifest(dir);
  const manifestFile = path.join(dir, MANIFEST_FILE);
  let realDir: string;
  try {
    realDir = await fs.realpath(dir);
  } catch (cause) {
    throw new EkkaError('input', `cannot resolve the dump folder (${describeCause(cause)})`, dir);
  }

  // Records by file, so each file is resolved and its header validated once.
  const byFile = new Map<string, number[]>();
  manifest.records.forEach((record, index) => {
    const indices = byFile.get(record.file) ?? [];
    indices.push(index);
    byFile.set(record.file, indices);
  });

  const files = new Map<string, SafetensorsFile>();
  const pool = new HandlePool(Math.max(1, options.maxOpenFiles ?? 16));
  try {
    for (const [relative, indices] of byFile) {
      const first = indices[0]!;
      const label = recordLabel(first, manifest.records[first]!.name);
      const real = await resolveDumpFile(realDir, relative, label, manifestFile);
      const uses = new Map<string, string[]>();
      for (const index of indices) {
        const record = manifest.records[index]!;
        const labels = uses.get(record.key) ?? [];
        labels.push(recordLabel(index, record.name));
        uses.set(record.key, labels);
      }
      const file = await SafetensorsFile.open(real, {
        file: path.join(dir, relative),
        describeTensor: tensorDescriber(uses),
      });
      files.set(relative, file);
      await pool.opened(file);
      for (const index of indices) {
        const record = manifest.records[index]!;
        checkRecordTensor(
          record,
          recordLabel(index, record.name),
          file.header.tensors.get(record.key),
          manifestFile,
        );
      }
    }
  } catch (cause) {
    await pool.closeAll();
    throw cause;
  }
  await pool.closeAll();

  const entries = manifest.records
    .map((record, index) => ({ record, index }))
    .sort((a, b) => a.record.seq - b.record.seq || a.index - b.index)
    .map(({ record }) => record);
  const info: CaptureInfo = {
    framework: manifest.framework,
    model: manifest.model,
    records: manifest.records.length,
  };
  if (manifest.frameworkVersion !== undefined) info.frameworkVersion = manifest.frameworkVersion;
  if (manifest.device !== undefined) info.device = manifest.device;
  if (manifest.dtype !== undefined) info.dtype = manifest.dtype;
  return new OpenedDump(dir, info, manifest, entries, files, pool);
}

/** Keeps at most `limit` files open, closing the least recently used. */
class HandlePool {
  private readonly open: SafetensorsFile[] = [];

  constructor(private readonly limit: number) {}

  /** Marks `file` as just used (it is open or about to be), closing others over the limit. */
  async opened(file: SafetensorsFile): Promise<void> {
    const at = this.open.indexOf(file);
    if (at >= 0) this.open.splice(at, 1);
    this.open.push(file);
    while (this.open.length > this.limit) await this.open.shift()!.close();
  }

  async closeAll(): Promise<void> {
    const files = this.open.splice(0);
    await Promise.all(files.map((file) => file.close()));
  }
}

class OpenedDump implements Dump {
  private readonly byName: Map<string, ManifestRecord>;
  /** Reads run one at a time, so the pool never closes a handle under a read in flight. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly dir: string,
    readonly info: CaptureInfo,
    readonly manifest: DumpManifest,
    readonly entries: readonly ManifestRecord[],
    private readonly files: Map<string, SafetensorsFile>,
    private readonly pool: HandlePool,
  ) {
    this.byName = new Map(manifest.records.map((record) => [record.name, record]));
  }

  async *records(): AsyncIterable<CapturedRecord> {
    try {
      for (const record of this.entries) yield await this.read(record);
    } finally {
      await this.close();
    }
  }

  readRecord(name: string): Promise<CapturedRecord> {
    const record = this.byName.get(name);
    if (!record) {
      return Promise.reject(
        new EkkaError(
          'input',
          `no record named ${JSON.stringify(name)}`,
          path.join(this.dir, MANIFEST_FILE),
        ),
      );
    }
    return this.read(record);
  }

  close(): Promise<void> {
    return this.serialized(() => this.pool.closeAll());
  }

  private read(record: ManifestRecord): Promise<CapturedRecord> {
    return this.serialized(async () => {
      const file = this.files.get(record.file)!;
      await this.pool.opened(file);
      const tensor = await file.readTensor(record.key);
      const captured: CapturedRecord = {
        name: record.name,
        seq: record.seq,
        module: record.module,
        className: record.class,
        call: record.call,
        output: record.output,
        dtype: record.dtype,
        shape: tensor.shape,
        data: tensor.data,
      };
      if (record.rank !== undefined) captured.rank = record.rank;
      if (record.source) captured.source = { file: record.source.file, line: record.source.line };
      if (record.inputs) captured.inputs = record.inputs;
      if (record.caller !== undefined) captured.caller = record.caller;
      if (record.arguments) captured.arguments = { ...record.arguments };
      return captured;
    });
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work);
    this.queue = result.catch(() => undefined);
    return result;
  }
}
