import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { endianness } from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { EkkaError, describeCause } from '../errors';
import { toNumberArray } from '../tensors/dtypes';
import type { CaptureInfo, CapturedRecord } from './capturedRecord';
import { PYTHON_CHOICES } from './pythonDiscovery';

/** Precision the helper converts the model and its float inputs to. */
export type PyTorchDType = 'float32' | 'bfloat16' | 'float16';
/** `auto` is CUDA when torch sees a GPU, else the CPU. */
export type PyTorchDevice = 'cpu' | 'cuda' | 'auto';

export interface PyTorchCaptureOptions {
  /** Interpreter with torch installed, as a path (never run through a shell). */
  python: string;
  /**
   * `path/to/file.py:function`, the function returning `(model, steps)`; relative to `cwd`. With
   * `hfModel`, only names the capture in messages.
   */
  factory: string;
  /** A HuggingFace model directory (the interpreter needs transformers) run on `tokenIds`. */
  hfModel?: { directory: string; tokenIds: number[] };
  dtype?: PyTorchDType;
  device?: PyTorchDevice;
  /** Working directory of the helper; default the current one. */
  cwd?: string;
  /** Variables added to the helper's environment (CUDA_VISIBLE_DEVICES, PYTHONPATH, ...). */
  env?: Record<string, string>;
  /** Fail once the captured tensors exceed this many bytes in total (as stored, before widening). */
  maxBytes?: number;
  /** Also capture every module's positional tensor inputs (records with outputs `in.0`, …). */
  inputs?: boolean;
  /** Save every module's first-call arguments to this file, for other runs' grafts and drill-downs. */
  graftSave?: string;
  /**
   * After the steps, run each leaf module on the arguments saved in this file (by a `graftSave`
   * run) and record its output as `<module>#1/graft` (see `isGraftRecord`).
   */
  graftFrom?: string;
  /**
   * With `graftFrom`, instead of the steps: run these modules on their saved arguments and record
   * every tensor op inside them (`<module>#1/op.<k>`, with `op` and `statement`).
   */
  drill?: string[];
  /** Kill the helper and fail when it has not finished by then; default no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Called for each record as it arrives, in execution order. */
  onRecord?(record: CapturedRecord): void;
}

export interface PyTorchCapture {
  info: CaptureInfo;
  records: CapturedRecord[];
}

/** Version of the frame stream on fd 3; the helper says it in its hello frame. */
export const CAPTURE_PROTOCOL = 1;
/** A frame header larger than this is not one the helper writes: the stream is corrupt. */
export const MAX_HEADER_BYTES = 1 << 20;
/** How much of the helper's stderr is kept for error messages. */
const STDERR_TAIL_BYTES = 8 * 1024;
/** Exit code of the helper when `import torch` fails. */
const EXIT_NO_TORCH = 3;
/** After the helper exits, how long its pipes may stay open (held by processes it started). */
const STRAGGLER_GRACE_MS = 2000;
/** After a kill, how long to wait for the process to be gone before giving up on it. */
const KILL_GRACE_MS = 3000;

export const ELEMENT_BYTES: Readonly<Record<string, number>> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int8: 1,
  uint8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  bool: 1,
};

/** The helper's record frame header, validated. */
export interface RecordHeader {
  name: string;
  seq: number;
  module: string;
  className: string;
  call: number;
  output: string;
  dtype: string;
  shape: number[];
  byteLength: number;
  source: { file: string; line: number } | null;
  /** Records the module's own code read (see CapturedRecord.inputs). */
  inputs?: string[];
  /** For an input record: the module whose code made the value. */
  caller?: string;
  /** For a module output: its inputs that are other records (CapturedRecord.arguments). */
  arguments?: Record<string, string>;
  /** Drill-down op records: what was called and the line that called it. */
  op?: string;
  statement?: { file: string; line: number } | null;
}

export interface HelloFrame {
  type: 'hello';
  protocol: number;
  torch: string;
  device: string;
  dtype: string;
  python: string;
}

export type CaptureFrame =
  | HelloFrame
  | { type: 'record'; header: RecordHeader; payload: Buffer }
  | { type: 'done'; records: number }
  | { type: 'error'; message: string; traceback: string };

/** The data channel broke the protocol at `offset` (a byte position in the stream). */
export class InvalidFrameError extends Error {
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`invalid frame at byte ${offset} (${reason})`);
    this.name = 'InvalidFrameError';
  }
}

type Json = Record<string, unknown>;

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Splits the helper's fd-3 byte stream into frames (4-byte little-endian header length, JSON
 * header, payload) and checks them: sizes, fields, dtypes, the order hello → records → done (or
 * error at any point), consecutive seq numbers and unique names. Chunks may split a frame anywhere.
 */
export class CaptureStreamDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Stream position of the first buffered byte. */
  private position = 0;
  /** Stream position where the frame being read starts. */
  private frameStart = 0;
  private headerLength?: number;
  private pendingRecord?: RecordHeader;
  private state: 'hello' | 'records' | 'finished' = 'hello';
  private readonly names = new Set<string>();
  private nextSeq = 0;

  /** Frames completed by this chunk; throws InvalidFrameError when the stream breaks the rules. */
  push(chunk: Buffer): CaptureFrame[] {
    if (chunk.length === 0) return [];
    if (this.state === 'finished') this.fail(this.position + this.buffered, 'data after the end');
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: CaptureFrame[] = [];
    for (;;) {
      if (this.headerLength === undefined) {
        if (this.buffered < 4) break;
        this.frameStart = this.position;
        const length = this.take(4).readUInt32LE(0);
        if (length === 0 || length > MAX_HEADER_BYTES) {
          this.fail(
            this.frameStart,
            `header length ${length} is not within 1..${MAX_HEADER_BYTES}`,
          );
        }
        this.headerLength = length;
      }
      if (this.pendingRecord === undefined) {
        if (this.buffered < this.headerLength) break;
        const frame = this.parseHeader(this.take(this.headerLength));
        if (frame !== 'record') {
          this.headerLength = undefined;
          frames.push(frame);
          if ((frame.type === 'done' || frame.type === 'error') && this.buffered > 0) {
            this.fail(this.position, 'data after the end');
          }
          continue;
        }
      }
      const header = this.pendingRecord!;
      if (this.buffered < header.byteLength) break;
      frames.push({ type: 'record', header, payload: this.take(header.byteLength) });
      this.pendingRecord = undefined;
      this.headerLength = undefined;
    }
    return frames;
  }

  /** The stream ended: throws when it ended inside a frame. */
  end(): void {
    if (this.buffered > 0 || this.headerLength !== undefined) {
      this.fail(this.frameStart, 'the stream ended inside a frame');
    }
  }

  private take(count: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const taken = joined.subarray(0, count);
    const rest = joined.subarray(count);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered -= count;
    this.position += count;
    return taken;
  }

  private fail(offset: number, reason: string): never {
    this.state = 'finished';
    throw new InvalidFrameError(offset, reason);
  }

  /** A non-record frame, or 'record' with the header kept as pendingRecord. */
  private parseHeader(bytes: Buffer): Exclude<CaptureFrame, { type: 'record' }> | 'record' {
    let header: unknown;
    try {
      header = JSON.parse(bytes.toString('utf8'));
    } catch (cause) {
      this.fail(this.frameStart, `header is not JSON: ${describeCause(cause)}`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) {
      this.fail(this.frameStart, 'header is not a JSON object');
    }
    const frame = header as Json;
    const str = (key: string): string => {
      const value = frame[key];
      if (typeof value !== 'string') this.fail(this.frameStart, `${key} is not a string`);
      return value;
    };
    const type = frame.type;
    if (type === 'error') {
      this.state = 'finished';
      return { type, message: str('message'), traceback: str('traceback') };
    }
    if (this.state === 'hello' && type !== 'hello') {
      this.fail(this.frameStart, `expected a hello frame, got ${JSON.stringify(type)}`);
    }
    switch (type) {
      case 'hello':
        if (this.state !== 'hello') this.fail(this.frameStart, 'a second hello frame');
        if (frame.protocol !== CAPTURE_PROTOCOL) {
          this.fail(
            this.frameStart,
            `protocol ${JSON.stringify(frame.protocol)}, expected ${CAPTURE_PROTOCOL}`,
          );
        }
        this.state = 'records';
        return {
          type,
          protocol: CAPTURE_PROTOCOL,
          torch: str('torch'),
          device: str('device'),
          dtype: str('dtype'),
          python: str('python'),
        };
      case 'done':
        if (!isNonNegativeInteger(frame.records) || frame.records !== this.nextSeq) {
          this.fail(
            this.frameStart,
            `done frame counts ${JSON.stringify(frame.records)} records, ${this.nextSeq} were sent`,
          );
        }
        this.state = 'finished';
        return { type, records: frame.records };
      case 'record':
        this.pendingRecord = this.parseRecord(frame, str);
        return 'record';
      default:
        this.fail(this.frameStart, `unknown frame type ${JSON.stringify(type)}`);
    }
  }

  private parseRecord(frame: Json, str: (key: string) => string): RecordHeader {
    const at = this.frameStart;
    const name = str('name');
    const module = str('module');
    const output = str('output');
    const dtype = str('dtype');
    const { seq, call, shape, byteLength, source, inputs, caller } = frame;
    const args: unknown = frame.arguments;
    if (seq !== this.nextSeq) {
      this.fail(at, `record ${name} has seq ${JSON.stringify(seq)}, expected ${this.nextSeq}`);
    }
    if (!isNonNegativeInteger(call) || call < 1) {
      this.fail(at, `record ${name} has call ${JSON.stringify(call)}`);
    }
    if (name !== `${module}#${call}/${output}`) {
      this.fail(at, `record name ${name} does not match ${module}#${call}/${output}`);
    }
    if (this.names.has(name)) this.fail(at, `record name ${name} is repeated`);
    const elementBytes = ELEMENT_BYTES[dtype];
    if (elementBytes === undefined) this.fail(at, `record ${name} has unknown dtype ${dtype}`);
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      this.fail(at, `record ${name} has shape ${JSON.stringify(shape)}`);
    }
    const dims = shape;
    const expected = dims.reduce((product, dim) => product * dim, 1) * elementBytes;
    if (byteLength !== expected) {
      this.fail(
        at,
        `record ${name} has byteLength ${JSON.stringify(byteLength)}, but ` +
          `${JSON.stringify(dims)} × ${elementBytes} bytes is ${expected}`,
      );
    }
    const locationOf = (field: string, value: unknown): RecordHeader['source'] => {
      if (value === null) return null;
      const file = (value as Json | undefined)?.file;
      const line = (value as Json | undefined)?.line;
      if (typeof file !== 'string' || !isNonNegativeInteger(line) || line < 1) {
        this.fail(at, `record ${name} has ${field} ${JSON.stringify(value)}`);
      }
      return { file, line };
    };
    const location = locationOf('source', source);
    const { op, statement } = frame;
    if (op !== undefined && typeof op !== 'string') {
      this.fail(at, `record ${name} has op ${JSON.stringify(op)}`);
    }
    if (
      inputs !== undefined &&
      !(Array.isArray(inputs) && inputs.every((input) => typeof input === 'string'))
    ) {
      this.fail(at, `record ${name} has inputs ${JSON.stringify(inputs)}`);
    }
    if (caller !== undefined && typeof caller !== 'string') {
      this.fail(at, `record ${name} has caller ${JSON.stringify(caller)}`);
    }
    if (
      args !== undefined &&
      !(
        typeof args === 'object' &&
        args !== null &&
        !Array.isArray(args) &&
        Object.values(args).every((value) => typeof value === 'string')
      )
    ) {
      this.fail(at, `record ${name} has arguments ${JSON.stringify(args)}`);
    }
    this.names.add(name);
    this.nextSeq++;
    return {
      name,
      seq,
      module,
      className: str('class'),
      call,
      output,
      dtype,
      shape: dims,
      byteLength: expected,
      source: location,
      ...(inputs !== undefined ? { inputs } : {}),
      ...(caller !== undefined ? { caller } : {}),
      ...(args !== undefined ? { arguments: args as Record<string, string> } : {}),
      ...(op !== undefined ? { op } : {}),
      ...(statement !== undefined ? { statement: locationOf('statement', statement) } : {}),
    };
  }
}

/** A record frame's payload as numbers: floats widened to float32 (float64 kept), ints to float64. */
export function decodePayload(header: RecordHeader, payload: Buffer): Float32Array | Float64Array {
  // A copy, so the typed array is aligned and does not pin the stream's larger buffer.
  const bytes = payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.length);
  switch (header.dtype) {
    case 'float32':
      return new Float32Array(bytes);
    case 'float64':
      return new Float64Array(bytes);
    case 'float16':
    case 'bfloat16':
      return toNumberArray(header.dtype, new Uint16Array(bytes));
    case 'int8':
      return toNumberArray(header.dtype, new Int8Array(bytes));
    case 'uint8':
    case 'bool':
      return toNumberArray(header.dtype, new Uint8Array(bytes));
    case 'int16':
      return toNumberArray(header.dtype, new Int16Array(bytes));
    case 'int32':
      return toNumberArray(header.dtype, new Int32Array(bytes));
    case 'int64':
      return toNumberArray(header.dtype, new BigInt64Array(bytes));
    default:
      throw new EkkaError('runtime', `record ${header.name}: no decoder for dtype ${header.dtype}`);
  }
}

/** The helper script: beside the bundle (dist/python) or in the source tree (under tsx). */
export function captureScriptPath(): string {
  const candidates = [
    path.join(__dirname, 'python', 'ekka_capture.py'),
    path.join(__dirname, '..', 'python', 'ekka_capture.py'),
  ];
  const found = candidates.find((candidate) => existsSync(candidate));
  if (!found) {
    throw new EkkaError(
      'runtime',
      `the capture helper ekka_capture.py is missing next to ${__dirname}`,
    );
  }
  return found;
}

function checkOptions(options: PyTorchCaptureOptions): void {
  const { python, factory, timeoutMs, maxBytes, cwd } = options;
  if (!python) throw new EkkaError('input', 'no Python interpreter was given for the capture');
  if (!options.hfModel && !/^.+\.py:[A-Za-z_][A-Za-z0-9_]*$/.test(factory)) {
    throw new EkkaError('input', `the model factory must be path/to/file.py:function`, factory);
  }
  if (timeoutMs !== undefined && !(timeoutMs > 0)) {
    throw new EkkaError('input', `timeoutMs must be positive, got ${timeoutMs}`, factory);
  }
  if (maxBytes !== undefined && !(Number.isSafeInteger(maxBytes) && maxBytes > 0)) {
    throw new EkkaError('input', `maxBytes must be a positive integer, got ${maxBytes}`, factory);
  }
  if (cwd !== undefined && !(existsSync(cwd) && statSync(cwd).isDirectory())) {
    throw new EkkaError('input', `the capture's working directory ${cwd} does not exist`, factory);
  }
  if (endianness() !== 'LE') {
    throw new EkkaError('runtime', 'PyTorch capture needs a little-endian host', factory);
  }
}

/** The last `limit` bytes written to a stream, for error messages. */
class OutputTail {
  private buffer = Buffer.alloc(0);
  constructor(private readonly limit: number) {}
  append(chunk: Buffer): void {
    const joined = Buffer.concat([this.buffer, chunk]);
    this.buffer = joined.length > this.limit ? joined.subarray(joined.length - this.limit) : joined;
  }
  text(): string {
    return this.buffer
      .toString('utf8')
      .replace(/^\uFFFD+/, '')
      .trim();
  }
}

/** Kills the helper's whole process group (it runs in its own), so grandchildren go too. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    if (process.platform === 'win32') child.kill('SIGKILL');
    else process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function spawnErrorMessage(python: string, cause: unknown): string {
  const code = (cause as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `the Python interpreter ${python} does not exist`;
  if (code === 'EACCES') return `the Python interpreter ${python} is not executable`;
  return `the Python interpreter ${python} could not be started: ${describeCause(cause)}`;
}

/**
 * Runs a PyTorch model factory in the capture helper (ekka_capture.py) and collects every module
 * output it streams back. The helper runs as `python script --factory ...` without a shell, in
 * its own process group, killed whole on timeout, cancellation or a broken stream.
 */
export function capturePyTorch(options: PyTorchCaptureOptions): Promise<PyTorchCapture> {
  try {
    checkOptions(options);
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
  const { python, factory, signal } = options;
  if (signal?.aborted)
    return Promise.reject(new EkkaError('cancelled', 'capture cancelled', factory));
  let script: string;
  try {
    script = captureScriptPath();
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
  const model = options.hfModel
    ? ['--hf-model', options.hfModel.directory, '--token-ids', options.hfModel.tokenIds.join(',')]
    : ['--factory', factory];
  const args = [
    script,
    ...model,
    '--dtype',
    options.dtype ?? 'float32',
    '--device',
    options.device ?? 'auto',
  ];
  if (options.maxBytes !== undefined) args.push('--max-bytes', String(options.maxBytes));
  if (options.inputs) args.push('--inputs');
  if (options.graftSave) args.push('--graft-save', options.graftSave);
  if (options.graftFrom) args.push('--graft-from', options.graftFrom);
  for (const module of options.drill ?? []) args.push('--drill', module);

  return new Promise<PyTorchCapture>((resolve, reject) => {
    const child = spawn(python, args, {
      shell: false,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      cwd: options.cwd,
      detached: process.platform !== 'win32',
      windowsHide: true,
      env: {
        ...process.env,
        ...options.env,
        PYTHONUNBUFFERED: '1',
        // Keep __pycache__ folders out of the user's model folder and the extension.
        PYTHONDONTWRITEBYTECODE: '1',
      },
    });
    const stderr = new OutputTail(STDERR_TAIL_BYTES);
    const decoder = new CaptureStreamDecoder();
    const records: CapturedRecord[] = [];
    let hello: HelloFrame | undefined;
    let done = false;
    let errorFrame: { message: string; traceback: string } | undefined;
    let failure: Error | undefined;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];

    const settle = (error: Error | undefined): void => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (error) {
        reject(error);
        return;
      }
      const info: CaptureInfo = {
        framework: 'pytorch',
        model: factory,
        frameworkVersion: hello?.torch,
        device: hello?.device,
        dtype: hello?.dtype,
        records: records.length,
      };
      resolve({ info, records });
    };

    /** Stop the helper; the promise rejects once it is gone (or after a grace period). */
    const fail = (error: Error): void => {
      if (failure || settled) return;
      failure = error;
      killGroup(child);
      timers.push(setTimeout(() => settle(error), KILL_GRACE_MS));
    };

    const onAbort = (): void => fail(new EkkaError('cancelled', 'capture cancelled', factory));
    signal?.addEventListener('abort', onAbort, { once: true });
    if (options.timeoutMs !== undefined) {
      const seconds = Number((options.timeoutMs / 1000).toFixed(3));
      timers.push(
        setTimeout(
          () =>
            fail(
              new EkkaError(
                'runtime',
                `the capture helper did not finish within ${seconds} s`,
                factory,
              ),
            ),
          options.timeoutMs,
        ),
      );
    }

    child.stdout!.on('data', (chunk: Buffer) => stderr.append(chunk));
    child.stderr!.on('data', (chunk: Buffer) => stderr.append(chunk));
    const data = child.stdio[3] as Readable;
    data.on('data', (chunk: Buffer) => {
      if (failure) return;
      try {
        for (const frame of decoder.push(chunk)) {
          switch (frame.type) {
            case 'hello':
              hello = frame;
              break;
            case 'record': {
              const { header } = frame;
              const record: CapturedRecord = {
                name: header.name,
                seq: header.seq,
                module: header.module,
                className: header.className,
                call: header.call,
                output: header.output,
                dtype: header.dtype,
                shape: header.shape,
                data: decodePayload(header, frame.payload),
              };
              if (header.source) record.source = header.source;
              if (header.inputs) record.inputs = header.inputs;
              if (header.caller !== undefined) record.caller = header.caller;
              if (header.arguments) record.arguments = header.arguments;
              if (header.op !== undefined) record.op = header.op;
              if (header.statement) record.statement = header.statement;
              records.push(record);
              options.onRecord?.(record);
              break;
            }
            case 'done':
              done = true;
              break;
            case 'error':
              errorFrame = frame;
              break;
          }
        }
      } catch (error) {
        fail(
          error instanceof InvalidFrameError
            ? new EkkaError(
                'runtime',
                `the capture helper wrote an invalid frame at byte ${error.offset} (${error.reason})`,
                factory,
              )
            : error instanceof Error
              ? error
              : new Error(String(error)),
        );
      }
    });

    child.on('error', (cause) => {
      // Only a failed start reaches here with no pid; later errors (a failed kill) are ignored.
      if (child.pid === undefined) {
        settle(new EkkaError('input', spawnErrorMessage(python, cause), factory));
      }
    });
    child.on('exit', () => {
      // Processes the model started may hold the pipes open; give them a moment, then kill them.
      if (!settled) timers.push(setTimeout(() => killGroup(child), STRAGGLER_GRACE_MS));
    });
    child.on('close', (code, killedBy) => {
      if (failure) {
        killGroup(child);
        settle(failure);
        return;
      }
      try {
        decoder.end();
      } catch (error) {
        if (error instanceof InvalidFrameError && code === 0) {
          settle(
            new EkkaError(
              'runtime',
              `the capture helper wrote an invalid frame at byte ${error.offset} (${error.reason})`,
              factory,
            ),
          );
          return;
        }
      }
      const tail = stderr.text();
      if (errorFrame) {
        const trace = errorFrame.traceback.trim();
        settle(
          new EkkaError(
            'runtime',
            `the model failed in the capture helper (exit code ${code}): ${errorFrame.message}` +
              (trace ? `\n${trace.slice(-4000)}` : ''),
            factory,
          ),
        );
        return;
      }
      if (code === EXIT_NO_TORCH) {
        const line = tail
          .split('\n')
          .find((text) => /^torch (is not installed|cannot be)/.test(text));
        settle(
          new EkkaError(
            'input',
            `${line ?? `torch cannot be imported by ${python}`}; ` +
              `choose a Python interpreter that has PyTorch installed: ${PYTHON_CHOICES}`,
            factory,
          ),
        );
        return;
      }
      if (code === 0 && done) {
        killGroup(child); // leftovers the model started; the helper itself is gone
        settle(undefined);
        return;
      }
      const how =
        code === 0
          ? 'exited without finishing the capture'
          : killedBy
            ? `was killed by ${killedBy}`
            : `exited with code ${code}`;
      settle(
        new EkkaError(
          'runtime',
          `the capture helper (${python}) ${how}` + (tail ? `; its last output:\n${tail}` : ''),
          factory,
        ),
      );
    });
  });
}
