import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { EkkaError, describeCause } from '../errors';
import { exposeFoldedConstants } from './foldedConstants';
import { applyExporterScopes, readGraphMetadata, type ScopeRewrite } from './nodeScopes';

/** A decoded ONNX model and where it came from. */
export interface OnnxModelFile {
  path: string;
  /** The file's bytes, to decode fresh copies for rewriting. */
  bytes: Uint8Array;
  model: onnx.ModelProto;
  /** Files holding initializers stored outside the model (`data_location = EXTERNAL`). */
  externalDataFiles: string[];
  /** Node names rewritten from the exporter's scope metadata (see onnx/nodeScopes). */
  scopes: ScopeRewrite;
}

/**
 * Reads and decodes an ONNX file with the official schema (onnx-proto), failing with a message
 * that names the file: missing, unreadable, not protobuf, truncated, or without a graph.
 */
export async function readOnnxModel(file: string): Promise<OnnxModelFile> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const what = code === 'ENOENT' ? 'file not found' : `cannot read: ${describeCause(cause)}`;
    throw new EkkaError('model', what, file);
  }
  if (bytes.length === 0) throw new EkkaError('model', 'empty file, not an ONNX model', file);
  let model: onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (cause) {
    throw new EkkaError(
      'model',
      `not a valid ONNX model: protobuf decoding failed (${describeCause(cause)}); the file may be truncated or of another format`,
      file,
    );
  }
  const graph = model.graph;
  if (!graph?.node?.length) {
    throw new EkkaError('model', 'not a valid ONNX model: it has no graph or no nodes', file);
  }
  if (model.opsetImport.length === 0) {
    throw new EkkaError('model', 'not a valid ONNX model: it declares no opset', file);
  }
  // Scopes from node metadata become node names once, here: every later copy decodes these bytes.
  let metadata: ReturnType<typeof readGraphMetadata>;
  try {
    metadata = readGraphMetadata(bytes);
  } catch (cause) {
    throw new EkkaError(
      'model',
      `not a valid ONNX model: its node metadata cannot be decoded (${describeCause(cause)}); the file may be damaged`,
      file,
    );
  }
  const scopes = applyExporterScopes(graph, metadata.nodes);
  const folded = exposeFoldedConstants(graph, metadata.values, scopes.wrapper);
  if (folded > 0) scopes.folded = folded;
  const encoded = scopes.renamed > 0 || folded > 0 ? onnx.ModelProto.encode(model).finish() : bytes;
  return {
    path: file,
    bytes: encoded,
    model,
    externalDataFiles: await externalDataFiles(model, file),
    scopes,
  };
}

/** Whether `file` lies inside `folder` (after resolving symbolic links). */
export async function isInside(folder: string, file: string): Promise<boolean> {
  const [realFolder, realFile] = await Promise.all([fs.realpath(folder), fs.realpath(file)]);
  const relative = path.relative(realFolder, realFile);
  return relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
}

async function externalDataFiles(model: onnx.ModelProto, file: string): Promise<string[]> {
  const folder = path.dirname(path.resolve(file));
  const locations = new Set<string>();
  for (const tensor of model.graph?.initializer ?? []) {
    if (tensor.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const location = (tensor.externalData ?? []).find((entry) => entry.key === 'location')?.value;
    if (!location) {
      throw new EkkaError(
        'model',
        `initializer "${tensor.name}" is external but names no location`,
        file,
      );
    }
    locations.add(location);
  }
  for (const location of locations) {
    const resolved = path.resolve(folder, location);
    let isFile: boolean;
    try {
      isFile = (await fs.stat(resolved)).isFile();
    } catch {
      throw new EkkaError('model', `external data file "${location}" is missing`, file);
    }
    if (path.isAbsolute(location) || !(await isInside(folder, resolved))) {
      throw new EkkaError(
        'model',
        `external data file "${location}" lies outside the model's folder`,
        file,
      );
    }
    // A folder passes the checks above (the model's own folder is inside itself).
    if (!isFile)
      throw new EkkaError('model', `external data file "${location}" is not a file`, file);
  }
  return [...locations];
}

/** The external data files' contents, as onnxruntime-node takes them (it wants bytes, not paths). */
export async function loadExternalData(
  file: OnnxModelFile,
): Promise<{ path: string; data: Uint8Array }[]> {
  const folder = path.dirname(path.resolve(file.path));
  return Promise.all(
    file.externalDataFiles.map(async (location) => {
      try {
        return { path: location, data: await fs.readFile(path.resolve(folder, location)) };
      } catch (cause) {
        throw new EkkaError(
          'model',
          `cannot read external data file "${location}" (${describeCause(cause)})`,
          file.path,
        );
      }
    }),
  );
}

/**
 * Moves externally stored initializers into the model (raw data), so that a rewrite such as a
 * precision conversion sees their values. `data` is what loadExternalData returned.
 */
export function inlineExternalData(
  model: onnx.ModelProto,
  data: readonly { path: string; data: Uint8Array }[],
  file: string,
): void {
  const byLocation = new Map(data.map((d) => [d.path, d.data]));
  for (const tensor of model.graph?.initializer ?? []) {
    if (tensor.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const entry = (key: string) => (tensor.externalData ?? []).find((e) => e.key === key)?.value;
    const bytes = byLocation.get(entry('location') ?? '');
    const offset = Number(entry('offset') ?? 0);
    const length =
      entry('length') === undefined ? (bytes?.length ?? 0) - offset : Number(entry('length'));
    if (!bytes || !(offset >= 0 && length >= 0 && offset + length <= bytes.length)) {
      throw new EkkaError(
        'model',
        `initializer "${tensor.name}": external data range ${offset}+${length} lies outside its file`,
        file,
      );
    }
    tensor.rawData = bytes.subarray(offset, offset + length);
    tensor.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    tensor.externalData = [];
  }
}

/** A Cast node: `input` converted to `to`, written to `output`. */
export function castNode(
  name: string,
  input: string,
  output: string,
  to: onnx.TensorProto.DataType,
): onnx.INodeProto {
  return {
    name,
    opType: 'Cast',
    input: [input],
    output: [output],
    attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: to }],
  };
}

/** Suffix of the float32 copies through which bfloat16 values are read back. */
export const WIDENED_SUFFIX = '::as_float32';

const BFLOAT16 = onnx.TensorProto.DataType.BFLOAT16;
/** Ops whose outputs never take their inputs' float type. */
const NON_FLOAT_OUTPUTS = new Set([
  'Shape',
  'Size',
  'NonZero',
  'ArgMax',
  'ArgMin',
  'Equal',
  'Greater',
  'GreaterOrEqual',
  'Less',
  'LessOrEqual',
  'Not',
  'And',
  'Or',
  'Xor',
  'IsNaN',
  'IsInf',
]);

/**
 * Values of the graph that hold bfloat16, found by propagating from bfloat16 sources (inputs,
 * initializers, constants, Casts to bfloat16) through ops that keep their input's type.
 * onnxruntime-node cannot hand bfloat16 tensors to JavaScript, so these are read through Casts.
 */
export function bfloat16Values(graph: onnx.IGraphProto): Set<string> {
  const found = new Set<string>();
  for (const input of graph.input ?? []) {
    if (input.type?.tensorType?.elemType === BFLOAT16) found.add(input.name ?? '');
  }
  for (const tensor of graph.initializer ?? [])
    if (tensor.dataType === BFLOAT16) found.add(tensor.name ?? '');
  for (const node of graph.node ?? []) {
    const outputs = (node.output ?? []).filter(Boolean);
    if (node.opType === 'Cast') {
      const to = node.attribute?.find((a) => a.name === 'to');
      if (Number(to?.i) === Number(BFLOAT16)) outputs.forEach((o) => found.add(o));
    } else if (node.opType === 'Constant') {
      if (node.attribute?.find((a) => a.name === 'value')?.t?.dataType === BFLOAT16)
        outputs.forEach((o) => found.add(o));
    } else if (
      !NON_FLOAT_OUTPUTS.has(node.opType ?? '') &&
      (node.input ?? []).some((i) => found.has(i))
    ) {
      // TopK's second output (indices) is int64; every other output follows the data.
      outputs.forEach((o, k) => (node.opType === 'TopK' && k === 1 ? undefined : found.add(o)));
    }
  }
  return found;
}

/**
 * Re-encodes the model with every node output (except Constant nodes') declared as a graph
 * output, so one run returns all intermediates; with `only`, just those values. bfloat16 values
 * are declared through an added Cast to float32 named `<value>::as_float32` (exact: bfloat16 is
 * the upper half of a float32). Outputs are untyped; onnxruntime accepts that and reports each
 * one's dtype and shape at run time. Mutates `model` and returns its bytes.
 */
export function exposeIntermediates(
  model: onnx.ModelProto,
  only?: ReadonlySet<string>,
): Uint8Array {
  const graph = model.graph!;
  const outputs = (graph.output ??= []);
  const declared = new Set(outputs.map((o) => o.name));
  const widen = bfloat16Values(graph);
  const casts: onnx.INodeProto[] = [];
  const widened = (name: string) => {
    const copy = `${name}${WIDENED_SUFFIX}`;
    casts.push(castNode(copy, name, copy, onnx.TensorProto.DataType.FLOAT));
    return onnx.ValueInfoProto.create({ name: copy });
  };
  // A bfloat16 output the graph itself declares is read through its copy too.
  outputs.forEach((output, i) => {
    if (widen.has(output.name ?? '')) outputs[i] = widened(output.name ?? '');
  });
  for (const node of graph.node ?? []) {
    if (node.opType === 'Constant') continue;
    for (const name of node.output ?? []) {
      if (!name || declared.has(name) || (only && !only.has(name))) continue;
      declared.add(name);
      outputs.push(widen.has(name) ? widened(name) : onnx.ValueInfoProto.create({ name }));
    }
  }
  graph.node = [...(graph.node ?? []), ...casts];
  return onnx.ModelProto.encode(model).finish();
}
