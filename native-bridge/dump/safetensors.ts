import { randomBytes } from 'node:crypto';
import { promises as fs, type Stats } from 'node:fs';
import { endianness } from 'node:os';
import * as path from 'node:path';
import { EkkaError, describeCause } from '../errors';
import { toFloatArray, toNumberArray, type FloatArray } from '../tensors/dtypes';

/**
 * The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON header, then the data section. The header maps each tensor name
 * to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the data section) and may
 * hold `__metadata__`, a map of strings. Headers are checked as the reference parser checks them
 * (size cap, offsets that tile the data section, byte lengths), and more strictly where it is
 * silent (duplicate names, unknown fields), so a hostile file fails with an EkkaError naming the
 * file and the tensor instead of a crash or a silently different tensor.
 */

/** Element types this reader knows, with their size in bytes and onnxruntime's name for them. */
export const SAFETENSORS_DTYPES = {
  F64: { size: 8, name: 'float64' },
  F32: { size: 4, name: 'float32' },
  F16: { size: 2, name: 'float16' },
  BF16: { size: 2, name: 'bfloat16' },
  I64: { size: 8, name: 'int64' },
  I32: { size: 4, name: 'int32' },
  I16: { size: 2, name: 'int16' },
  I8: { size: 1, name: 'int8' },
  U64: { size: 8, name: 'uint64' },
  U32: { size: 4, name: 'uint32' },
  U16: { size: 2, name: 'uint16' },
  U8: { size: 1, name: 'uint8' },
  BOOL: { size: 1, name: 'bool' },
} as const;

export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPES;

/** The safetensors dtype of an onnxruntime type name (`float32` → `F32`), if it has one. */
export function safetensorsDType(name: string): SafetensorsDType | undefined {
  for (const [dtype, info] of Object.entries(SAFETENSORS_DTYPES)) {
    if (info.name === name) return dtype as SafetensorsDType;
  }
  return undefined;
}

function isSafetensorsDType(value: string): value is SafetensorsDType {
  return Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPES, value);
}

/** The reference parser refuses headers above 100 MB; so do we, before allocating anything. */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';
const TENSOR_FIELDS = ['dtype', 'shape', 'data_offsets'] as const;

/** One tensor as the header describes it; offsets are relative to the data section. */
export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** N, the JSON header's length in bytes (padding included). */
  headerLength: number;
  /** Where the data section starts in the file: 8 + N. */
  dataOffset: number;
  dataLength: number;
  metadata: Record<string, string>;
  /** In header order. */
  tensors: Map<string, TensorEntry>;
}

/** How errors name things: the file label, and optionally a richer name for a tensor. */
export interface SafetensorsContext {
  /** Shown before every message; a path as the user would recognize it. */
  file: string;
  /** `tensor "k"` by default; a dump adds the record that uses it. */
  describeTensor?: (name: string) => string;
}

function plainTensorName(name: string): string {
  return `tensor ${JSON.stringify(name)}`;
}

/**
 * The first key that appears twice in one object of a JSON text, with where that object sits:
 * the keys and array indices leading to it, outermost first. JSON.parse keeps the last duplicate
 * silently, so a header could otherwise describe two tensors under one name and show only one.
 * `text` must be valid JSON (parse it first); the scan is linear and needs no recursion.
 */
export function findDuplicateJsonKey(text: string): { key: string; path: string[] } | undefined {
  interface Frame {
    /** Keys seen so far; absent for arrays. */
    keys?: Set<string>;
    expectKey: boolean;
    /** The last key read (objects) or the current index (arrays). */
    current: string;
    index: number;
    /** Where this container sits in its parent. */
    under: string;
  }
  const stack: Frame[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      while (j < text.length && text.charCodeAt(j) !== 0x22) {
        if (text.charCodeAt(j) === 0x5c /* \ */) {
          escaped = true;
          j++;
        }
        j++;
      }
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        const raw = text.slice(i, j + 1);
        const key = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (top.keys.has(key)) return { key, path: stack.slice(1).map((frame) => frame.under) };
        top.keys.add(key);
        top.current = key;
        top.expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const isObject = c === 0x7b;
      stack.push({
        keys: isObject ? new Set() : undefined,
        expectKey: isObject,
        current: isObject ? '' : '0',
        index: 0,
        under: stack[stack.length - 1]?.current ?? '',
      });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
      else if (top) top.current = String(++top.index);
    }
  }
  return undefined;
}

function describeJsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** Defines an own property even for a key like `__proto__`, which plain assignment would not. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** A shape for a message; a hostile header's million-entry shape is shortened. */
function formatShape(shape: readonly number[]): string {
  const shown = shape.length > 16 ? [...shape.slice(0, 16), `… ${shape.length - 16} more`] : shape;
  return `[${shown.join(', ')}]`;
}

/** No file holds 2^64 bytes; products past it need not be exact. */
const BYTE_LENGTH_CAP = 2n ** 64n;

/**
 * product(shape) × element size as a message shows it, and whether it equals `actual`. Exact
 * (BigInt, no 64-bit wrap-around) up to 2^64; beyond, the product is only known to be larger,
 * which also keeps a hostile many-dimensional shape from costing quadratic time.
 */
export function checkByteLength(
  shape: readonly number[],
  elementSize: number,
  actual: number,
): { matches: boolean; expected: string } {
  if (shape.includes(0)) return { matches: actual === 0, expected: '0' };
  let count = BigInt(elementSize);
  for (const dim of shape) {
    count *= BigInt(dim);
    if (count > BYTE_LENGTH_CAP)
      return { matches: false, expected: `more than ${BYTE_LENGTH_CAP}` };
  }
  return { matches: count === BigInt(actual), expected: String(count) };
}

function isNonNegativeSafeInteger(value: unknown): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Validates a header's JSON bytes (the N bytes after the length prefix) against a data section of
 * `dataLength` bytes: UTF-8, a JSON object without duplicate keys, string metadata, known dtypes,
 * non-negative integer shapes and offsets, byte length = product(shape) × dtype size, and tensors
 * that tile the data section from 0 to its end without holes or overlaps.
 */
export function parseSafetensorsHeader(
  headerBytes: Uint8Array,
  dataLength: number,
  context: SafetensorsContext,
): SafetensorsHeader {
  const fail: (message: string) => never = (message) => {
    throw new EkkaError('input', message, context.file);
  };
  const describe = context.describeTensor ?? plainTensorName;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    return fail('header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch (cause) {
    return fail(`header is not valid JSON (${describeCause(cause)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return fail(`header is not a JSON object (it is ${describeJsonType(parsed)})`);
  }
  const duplicate = findDuplicateJsonKey(text);
  if (duplicate) {
    const [outer] = duplicate.path;
    if (outer === undefined) {
      if (duplicate.key === METADATA_KEY)
        return fail(`${METADATA_KEY} appears twice in the header`);
      return fail(`${describe(duplicate.key)} appears twice in the header`);
    }
    const where = outer === METADATA_KEY ? METADATA_KEY : describe(outer);
    return fail(`${where}: key ${JSON.stringify(duplicate.key)} appears twice`);
  }

  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorEntry>();
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      if (value === null) continue;
      if (typeof value !== 'object' || Array.isArray(value)) {
        return fail(`${METADATA_KEY} is ${describeJsonType(value)}, not an object of strings`);
      }
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        if (typeof item !== 'string') {
          return fail(
            `${METADATA_KEY} ${JSON.stringify(key)} is ${describeJsonType(item)}, not a string`,
          );
        }
        setOwn(metadata, key, item);
      }
      continue;
    }
    tensors.set(name, parseTensorEntry(name, value, dataLength, describe(name), fail));
  }
  checkTiling([...tensors.values()], dataLength, describe, fail);
  return {
    headerLength: headerBytes.length,
    dataOffset: 8 + headerBytes.length,
    dataLength,
    metadata,
    tensors,
  };
}

function parseTensorEntry(
  name: string,
  value: unknown,
  dataLength: number,
  label: string,
  fail: (message: string) => never,
): TensorEntry {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail(`${label}: entry is ${describeJsonType(value)}, not an object`);
  }
  const entry = value as Record<string, unknown>;
  for (const key of Object.keys(entry)) {
    if (!(TENSOR_FIELDS as readonly string[]).includes(key)) {
      return fail(`${label}: unexpected field ${JSON.stringify(key)}`);
    }
  }
  for (const key of TENSOR_FIELDS) {
    if (!(key in entry)) return fail(`${label}: missing "${key}"`);
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string' || !isSafetensorsDType(dtype)) {
    const known = Object.keys(SAFETENSORS_DTYPES).join(', ');
    return fail(`${label}: dtype ${JSON.stringify(dtype)} is not one of ${known}`);
  }
  if (!Array.isArray(shape))
    return fail(`${label}: shape is ${describeJsonType(shape)}, not an array`);
  shape.forEach((dim: unknown, index) => {
    if (!isNonNegativeSafeInteger(dim)) {
      fail(`${label}: shape[${index}] is ${JSON.stringify(dim)}, not a non-negative integer`);
    }
  });
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !isNonNegativeSafeInteger(offsets[0]) ||
    !isNonNegativeSafeInteger(offsets[1])
  ) {
    return fail(
      `${label}: data_offsets ${JSON.stringify(offsets)} is not two non-negative integers`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) return fail(`${label}: data_offsets [${begin}, ${end}] begin after they end`);
  if (end > dataLength) {
    return fail(
      `${label}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataLength} bytes)`,
    );
  }
  const size = SAFETENSORS_DTYPES[dtype].size;
  const { matches, expected } = checkByteLength(shape as number[], size, end - begin);
  if (!matches) {
    return fail(
      `${label}: byte length ${end - begin} ≠ ${size} × ${formatShape(shape as number[])} ${dtype} = ${expected}`,
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/** Tensors must cover the data section exactly, like the reference parser requires. */
function checkTiling(
  entries: TensorEntry[],
  dataLength: number,
  describe: (name: string) => string,
  fail: (message: string) => never,
): void {
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: TensorEntry | undefined;
  for (const entry of sorted) {
    if (entry.begin < covered && previous) {
      fail(
        `${describe(entry.name)} data_offsets [${entry.begin}, ${entry.end}] overlap ` +
          `${describe(previous.name)} data_offsets [${previous.begin}, ${previous.end}]`,
      );
    }
    if (entry.begin > covered) {
      const where = previous
        ? `between ${describe(previous.name)} and ${describe(entry.name)}`
        : `before ${describe(entry.name)}`;
      fail(`data bytes ${covered} to ${entry.begin} belong to no tensor (${where})`);
    }
    covered = entry.end;
    previous = entry;
  }
  if (covered < dataLength) {
    const where = previous ? `after ${describe(previous.name)}` : 'the header lists no tensors';
    fail(`data bytes ${covered} to ${dataLength} belong to no tensor (${where})`);
  }
}

async function readFully(
  handle: fs.FileHandle,
  target: Uint8Array,
  position: number,
  onShort: (at: number) => never,
): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const { bytesRead } = await handle.read(target, done, target.length - done, position + done);
    if (bytesRead === 0) onShort(position + done);
    done += bytesRead;
  }
}

/**
 * Reads and validates the header of an open file of `fileSize` bytes: the length prefix is checked
 * against the file and the 100 MB cap before any header byte is read.
 */
export async function readSafetensorsHeader(
  handle: fs.FileHandle,
  fileSize: number,
  context: SafetensorsContext,
): Promise<SafetensorsHeader> {
  const fail: (message: string) => never = (message) => {
    throw new EkkaError('input', message, context.file);
  };
  if (fileSize < 8) fail(`file is ${fileSize} bytes, too short for the 8-byte header length`);
  const prefix = new Uint8Array(8);
  const truncated = (at: number): never =>
    fail(`file ended at byte ${at} while reading the header (it changed while being read)`);
  await readFully(handle, prefix, 0, truncated);
  const headerLength = new DataView(prefix.buffer).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    fail(`header length ${headerLength} exceeds the ${MAX_HEADER_BYTES / 1e6} MB limit`);
  }
  if (headerLength > BigInt(fileSize - 8)) {
    fail(
      `header length ${headerLength} runs past the end of the file (${fileSize - 8} bytes follow the length prefix)`,
    );
  }
  const headerBytes = new Uint8Array(Number(headerLength));
  await readFully(handle, headerBytes, 8, truncated);
  return parseSafetensorsHeader(headerBytes, fileSize - 8 - headerBytes.length, context);
}

/** A decoded tensor: values widened to float32 (floats) or float64 (integers, bools, float64). */
export interface DecodedTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: FloatArray;
}

const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** Reverses each `size`-byte element in place: safetensors is little-endian on every host. */
function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let at = 0; at + size <= bytes.length; at += size) {
    bytes.subarray(at, at + size).reverse();
  }
}

/**
 * Little-endian bytes in host order at an offset aligned to `size`, so typed arrays can view them:
 * `bytes` itself when it already is, else a copy.
 */
function hostOrder(bytes: Uint8Array, size: number): Uint8Array {
  if (LITTLE_ENDIAN_HOST && bytes.byteOffset % size === 0) return bytes;
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  if (!LITTLE_ENDIAN_HOST) swapBytes(copy, size);
  return copy;
}

/**
 * Tensor bytes as numbers; fp16 and bf16 are decoded through the shared dtype helpers. F32 and F64
 * results may share memory with `bytes`.
 */
export function decodeTensorBytes(dtype: SafetensorsDType, bytes: Uint8Array): FloatArray {
  const size = SAFETENSORS_DTYPES[dtype].size;
  if (bytes.length % size !== 0) {
    throw new EkkaError('input', `${bytes.length} bytes is not a whole number of ${dtype} values`);
  }
  const host = hostOrder(bytes, size);
  const buffer = host.buffer;
  const offset = host.byteOffset;
  const count = host.byteLength / size;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buffer, offset, count);
    case 'F64':
      return new Float64Array(buffer, offset, count);
    case 'F16':
      return toFloatArray('float16', new Uint16Array(buffer, offset, count));
    case 'BF16':
      return toFloatArray('bfloat16', new Uint16Array(buffer, offset, count));
    case 'I64':
      return toNumberArray('int64', new BigInt64Array(buffer, offset, count));
    case 'U64':
      return toNumberArray('uint64', new BigUint64Array(buffer, offset, count));
    case 'I32':
      return toNumberArray('int32', new Int32Array(buffer, offset, count));
    case 'U32':
      return toNumberArray('uint32', new Uint32Array(buffer, offset, count));
    case 'I16':
      return toNumberArray('int16', new Int16Array(buffer, offset, count));
    case 'U16':
      return toNumberArray('uint16', new Uint16Array(buffer, offset, count));
    case 'I8':
      return toNumberArray('int8', new Int8Array(buffer, offset, count));
    case 'U8':
      return toNumberArray('uint8', new Uint8Array(buffer, offset, count));
    case 'BOOL':
      // A bool is true or false whatever byte stores it.
      return Float64Array.from(new Uint8Array(buffer, offset, count), (byte) =>
        byte === 0 ? 0 : 1,
      );
  }
}

function roundHalfToEven(x: number): number {
  const floor = Math.floor(x);
  const rest = x - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * A number rounded (to nearest, ties to even) into a binary float with `mantissaBits` fraction
 * bits and exponent bias `bias`, as its bit pattern. Rounds once from float64, so there is no
 * double rounding through float32.
 */
function toNarrowFloatBits(value: number, mantissaBits: number, bias: number, nan: number): number {
  if (Number.isNaN(value)) return nan;
  const exponentMask = 2 * bias + 1;
  // Both narrow types are 16 bits wide, sign on top.
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  const maxExponent = bias;
  const overflow = 2 ** maxExponent * (2 - 2 ** -(mantissaBits + 1));
  if (magnitude >= overflow) return sign | (exponentMask << mantissaBits);
  const minNormal = 2 ** (1 - bias);
  if (magnitude < minNormal) {
    // Subnormal (a carry into the smallest normal gives its bit pattern by itself).
    return sign | roundHalfToEven(magnitude * 2 ** (bias - 1 + mantissaBits));
  }
  let exponent = Math.floor(Math.log2(magnitude));
  if (2 ** exponent > magnitude) exponent--;
  if (2 ** (exponent + 1) <= magnitude) exponent++;
  const fraction = roundHalfToEven((magnitude / 2 ** exponent - 1) * 2 ** mantissaBits);
  // A fraction that rounds up to 2^mantissaBits carries into the exponent by plain addition.
  return sign | (((exponent + bias) << mantissaBits) + fraction);
}

/** IEEE binary16 bit pattern of a number (round to nearest even). */
export function numberToFloat16Bits(value: number): number {
  return toNarrowFloatBits(value, 10, 15, 0x7e00);
}

/** bfloat16 bit pattern of a number (round to nearest even). */
export function numberToBfloat16Bits(value: number): number {
  return toNarrowFloatBits(value, 7, 127, 0x7fc0);
}

const INTEGER_RANGES: Partial<Record<SafetensorsDType, [number, number]>> = {
  I64: [-(2 ** 63), 2 ** 63 - 1],
  U64: [0, 2 ** 64 - 1],
  I32: [-(2 ** 31), 2 ** 31 - 1],
  U32: [0, 2 ** 32 - 1],
  I16: [-(2 ** 15), 2 ** 15 - 1],
  U16: [0, 2 ** 16 - 1],
  I8: [-128, 127],
  U8: [0, 255],
  BOOL: [0, 1],
};

/**
 * Numbers as little-endian bytes of `dtype`: floats are rounded to the type, integers must be
 * whole and in range (a widened integer tensor comes back exactly). `label` names the tensor and
 * `file` the destination in the error for a value that does not fit.
 */
export function encodeTensorValues(
  dtype: SafetensorsDType,
  values: ArrayLike<number>,
  label: string,
  file?: string,
): Uint8Array {
  const range = INTEGER_RANGES[dtype];
  if (range) {
    for (let i = 0; i < values.length; i++) {
      const value = values[i]!;
      if (!Number.isInteger(value) || value < range[0] || value > range[1]) {
        throw new EkkaError(
          'input',
          `${label}: value ${value} at index ${i} is not a valid ${dtype}`,
          file,
        );
      }
    }
  }
  let typed: ArrayBufferView;
  switch (dtype) {
    case 'F32':
      typed = Float32Array.from(values);
      break;
    case 'F64':
      typed = Float64Array.from(values);
      break;
    case 'F16':
      typed = Uint16Array.from(values, numberToFloat16Bits);
      break;
    case 'BF16':
      typed = Uint16Array.from(values, numberToBfloat16Bits);
      break;
    case 'I64':
      typed = BigInt64Array.from(values, (value) => BigInt(value));
      break;
    case 'U64':
      typed = BigUint64Array.from(values, (value) => BigInt(value));
      break;
    case 'I32':
      typed = Int32Array.from(values);
      break;
    case 'U32':
      typed = Uint32Array.from(values);
      break;
    case 'I16':
      typed = Int16Array.from(values);
      break;
    case 'U16':
      typed = Uint16Array.from(values);
      break;
    case 'I8':
      typed = Int8Array.from(values);
      break;
    case 'U8':
    case 'BOOL':
      typed = Uint8Array.from(values);
      break;
  }
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  if (!LITTLE_ENDIAN_HOST) swapBytes(bytes, SAFETENSORS_DTYPES[dtype].size);
  return bytes;
}

/** One tensor to write: its little-endian bytes, already in `dtype`. */
export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * The file's first bytes (length prefix and JSON header, padded with spaces so the data section
 * starts 8-byte aligned, as the reference writer does) and the order the tensors' bytes follow in.
 * Tensors are laid out by element size, largest first, so every tensor is aligned to its type.
 */
export function encodeSafetensorsHeader(
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
  file = 'safetensors file',
): { prefix: Uint8Array; order: TensorToWrite[] } {
  const fail: (message: string) => never = (message) => {
    throw new EkkaError('input', message, file);
  };
  const header: Record<string, unknown> = {};
  const names = new Set<string>();
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') fail(`${METADATA_KEY} ${JSON.stringify(key)} is not a string`);
    }
    setOwn(header, METADATA_KEY, metadata);
  }
  for (const tensor of tensors) {
    const label = plainTensorName(tensor.name);
    if (tensor.name === METADATA_KEY) fail(`${label}: the name is reserved for metadata`);
    if (names.has(tensor.name)) fail(`${label} appears twice`);
    names.add(tensor.name);
    const dtype: string = tensor.dtype;
    if (!isSafetensorsDType(dtype)) fail(`${label}: unknown dtype ${JSON.stringify(dtype)}`);
    tensor.shape.forEach((dim, index) => {
      if (!isNonNegativeSafeInteger(dim)) {
        fail(`${label}: shape[${index}] is ${dim}, not a non-negative integer`);
      }
    });
    const size = SAFETENSORS_DTYPES[tensor.dtype].size;
    const { matches, expected } = checkByteLength(tensor.shape, size, tensor.bytes.length);
    if (!matches) {
      fail(
        `${label}: byte length ${tensor.bytes.length} ≠ ${size} × ${formatShape(tensor.shape)} ${tensor.dtype} = ${expected}`,
      );
    }
  }
  const order = tensors
    .map((tensor, index) => ({ tensor, index }))
    .sort(
      (a, b) =>
        SAFETENSORS_DTYPES[b.tensor.dtype].size - SAFETENSORS_DTYPES[a.tensor.dtype].size ||
        a.index - b.index,
    )
    .map(({ tensor }) => tensor);
  let offset = 0;
  for (const tensor of order) {
    setOwn(header, tensor.name, {
      dtype: tensor.dtype,
      shape: tensor.shape,
      data_offsets: [offset, offset + tensor.bytes.length],
    });
    offset += tensor.bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) fail(`header would be ${padded} bytes, over the 100 MB limit`);
  const prefix = new Uint8Array(8 + padded).fill(0x20);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded), true);
  prefix.set(json, 8);
  return { prefix, order };
}

/** A whole safetensors file in memory (for small files and tests). */
export function encodeSafetensors(
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Uint8Array {
  const { prefix, order } = encodeSafetensorsHeader(tensors, metadata);
  const total = order.reduce((sum, tensor) => sum + tensor.bytes.length, prefix.length);
  const out = new Uint8Array(total);
  out.set(prefix);
  let at = prefix.length;
  for (const tensor of order) {
    out.set(tensor.bytes, at);
    at += tensor.bytes.length;
  }
  return out;
}

/**
 * Writes a safetensors file atomically: the bytes go to a temporary file in the same folder,
 * streamed tensor by tensor, are flushed, then renamed over `file`.
 */
export async function writeSafetensorsFile(
  file: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  const { prefix, order } = encodeSafetensorsHeader(tensors, metadata, file);
  const temp = path.join(
    path.dirname(file),
    `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  const handle = await fs.open(temp, 'wx', 0o644);
  try {
    await handle.writeFile(prefix);
    for (const tensor of order) await handle.writeFile(tensor.bytes);
    await handle.sync();
    await handle.close();
    await fs.rename(temp, file);
  } catch (cause) {
    await handle.close().catch(() => undefined);
    await fs.rm(temp, { force: true });
    throw cause;
  }
}

/**
 * One safetensors file: its header is read and validated when it is opened, tensors are read by
 * byte range on demand. The file handle can be closed and is reopened by the next read (a dump
 * keeps only a few open); a file that changed size in between is refused.
 */
export class SafetensorsFile {
  private handle: fs.FileHandle | undefined;

  private constructor(
    readonly filePath: string,
    readonly context: SafetensorsContext,
    readonly size: number,
    readonly header: SafetensorsHeader,
    handle: fs.FileHandle,
  ) {
    this.handle = handle;
  }

  /** Opens and validates `file`; errors name `context.file` (the path itself by default). */
  static async open(file: string, context?: Partial<SafetensorsContext>): Promise<SafetensorsFile> {
    const full: SafetensorsContext = { file, ...context };
    const handle = await openRegularFile(file, full.file);
    try {
      const { size } = await handle.stat();
      const header = await readSafetensorsHeader(handle, size, full);
      return new SafetensorsFile(file, full, size, header, handle);
    } catch (cause) {
      await handle.close();
      throw cause;
    }
  }

  get isOpen(): boolean {
    return this.handle !== undefined;
  }

  entry(name: string): TensorEntry {
    const entry = this.header.tensors.get(name);
    if (!entry) {
      throw new EkkaError('input', `no ${plainTensorName(name)} in the file`, this.context.file);
    }
    return entry;
  }

  /** The tensor's raw little-endian bytes, read from its byte range only. */
  async readTensorBytes(name: string): Promise<Uint8Array> {
    const entry = this.entry(name);
    const handle = await this.ensureOpen();
    const bytes = new Uint8Array(entry.end - entry.begin);
    const label = (this.context.describeTensor ?? plainTensorName)(name);
    await readFully(handle, bytes, this.header.dataOffset + entry.begin, (at) => {
      throw new EkkaError(
        'input',
        `${label}: file ended at byte ${at} while reading it (the file changed after it was opened)`,
        this.context.file,
      );
    });
    return bytes;
  }

  async readTensor(name: string): Promise<DecodedTensor> {
    const entry = this.entry(name);
    const bytes = await this.readTensorBytes(name);
    return {
      dtype: entry.dtype,
      shape: entry.shape.slice(),
      data: decodeTensorBytes(entry.dtype, bytes),
    };
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }

  private async ensureOpen(): Promise<fs.FileHandle> {
    if (this.handle) return this.handle;
    const handle = await openRegularFile(this.filePath, this.context.file);
    let stats: Stats;
    try {
      stats = await handle.stat();
    } catch (cause) {
      await handle.close();
      throw new EkkaError('input', `cannot read (${describeCause(cause)})`, this.context.file);
    }
    if (stats.size !== this.size) {
      await handle.close();
      throw new EkkaError(
        'input',
        `file is now ${stats.size} bytes, ${this.size} when it was opened (it changed)`,
        this.context.file,
      );
    }
    this.handle = handle;
    return handle;
  }
}

async function openRegularFile(file: string, label: string): Promise<fs.FileHandle> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new EkkaError(
      'input',
      missing ? 'file not found' : `cannot open (${describeCause(cause)})`,
      label,
    );
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new EkkaError('input', 'not a regular file', label);
  } catch (cause) {
    await handle.close();
    if (cause instanceof EkkaError) throw cause;
    throw new EkkaError('input', `cannot read (${describeCause(cause)})`, label);
  }
  return handle;
}
