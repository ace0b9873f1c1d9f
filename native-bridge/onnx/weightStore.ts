import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { EkkaError, describeCause } from '../errors';
import type { OnnxModelFile } from './modelFile';

/** Initializers at least this large are left on disk and read when a segment needs them. */
const ON_DISK_BYTES = 4096;

interface OnDisk {
  /** The initializer without its data. */
  tensor: onnx.ITensorProto;
  file: string;
  offset: number;
  /** -1: to the end of the file. */
  length: number;
}

/**
 * The weights of a model, kept on disk where they are large. Partitioned runs build each segment's
 * model from only the initializers it reads, loaded when the segment runs and dropped after, so a
 * run's resident weights are one segment's, not the model's.
 */
export class WeightStore {
  private constructor(
    private readonly modelFile: string,
    private readonly onDisk: Map<string, OnDisk>,
    private readonly inMemory: Map<string, onnx.ITensorProto>,
  ) {}

  /**
   * Takes the initializers out of `file.model`: large ones are remembered by their byte range in
   * the model file (or their external data file), small ones are copied. Every remaining byte view
   * into the file's buffer is copied too, so that the buffer itself can be freed.
   */
  static detach(file: OnnxModelFile): WeightStore {
    const graph = file.model.graph!;
    const folder = path.dirname(path.resolve(file.path));
    const onDisk = new Map<string, OnDisk>();
    const inMemory = new Map<string, onnx.ITensorProto>();
    for (const tensor of graph.initializer ?? []) {
      const name = tensor.name ?? '';
      const raw = tensor.rawData;
      if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
        const entry = (key: string) =>
          (tensor.externalData ?? []).find((e) => e.key === key)?.value;
        onDisk.set(name, {
          tensor: {
            ...tensor,
            dataLocation: onnx.TensorProto.DataLocation.DEFAULT,
            externalData: [],
          },
          file: path.resolve(folder, entry('location') ?? ''),
          offset: Number(entry('offset') ?? 0),
          length: entry('length') === undefined ? -1 : Number(entry('length')),
        });
      } else if (raw && raw.length >= ON_DISK_BYTES) {
        onDisk.set(name, {
          tensor: { ...tensor, rawData: new Uint8Array(0) },
          file: path.resolve(file.path),
          offset: raw.byteOffset - file.bytes.byteOffset,
          length: raw.length,
        });
      } else {
        // A decoded message has an empty rawData even when its data is in float_data & co.
        inMemory.set(name, raw?.length ? { ...tensor, rawData: new Uint8Array(raw) } : tensor);
      }
    }
    graph.initializer = [];
    for (const node of graph.node ?? []) {
      for (const attribute of node.attribute ?? []) {
        if (attribute.t?.rawData?.length) attribute.t.rawData = new Uint8Array(attribute.t.rawData);
      }
    }
    return new WeightStore(file.path, onDisk, inMemory);
  }

  /** Holds every initializer of `model` in memory (a converted model has no file behind it). */
  static inMemoryOf(model: onnx.ModelProto, file: string): WeightStore {
    const inMemory = new Map((model.graph?.initializer ?? []).map((t) => [t.name ?? '', t]));
    model.graph!.initializer = [];
    return new WeightStore(file, new Map(), inMemory);
  }

  /** The initializers called `names`, large ones read from disk now. */
  async load(names: readonly string[]): Promise<onnx.ITensorProto[]> {
    const loaded: onnx.ITensorProto[] = [];
    for (const name of names) {
      const memory = this.inMemory.get(name);
      const disk = this.onDisk.get(name);
      if (memory) loaded.push(memory);
      else if (disk) loaded.push({ ...disk.tensor, rawData: await this.read(disk, name) });
      else throw new EkkaError('model', `initializer "${name}" is missing`, this.modelFile);
    }
    return loaded;
  }

  private async read(source: OnDisk, name: string): Promise<Uint8Array> {
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(source.file, 'r');
      const length =
        source.length >= 0 ? source.length : (await handle.stat()).size - source.offset;
      const buffer = Buffer.allocUnsafe(length);
      // One read returns at most about 2 GiB: read in chunks.
      for (let done = 0; done < length; ) {
        const chunk = Math.min(length - done, 1 << 30);
        const { bytesRead } = await handle.read(buffer, done, chunk, source.offset + done);
        if (bytesRead === 0) throw new Error(`read ${done} of ${length} bytes`);
        done += bytesRead;
      }
      return buffer;
    } catch (cause) {
      throw new EkkaError(
        'model',
        `cannot read the weights of "${name}": ${describeCause(cause)}`,
        this.modelFile,
      );
    } finally {
      await handle?.close();
    }
  }
}
