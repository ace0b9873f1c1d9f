/**
 * Fuzz properties of protocol decoding: the webview message guard (arbitrary values and mutated
 * valid messages; it returns undefined, never throws) and the PyTorch capture frame decoder
 * (random chunks and damaged valid streams; it throws only InvalidFrameError).
 */
import * as assert from 'node:assert/strict';
import * as fc from 'fast-check';
import { EkkaError } from '../../native-bridge/errors';
import { PROTOCOL_VERSION } from '../../native-bridge/protocol';
import { parseWebviewMessage } from '../../native-bridge/protocolGuards';
import {
  ELEMENT_BYTES,
  CaptureStreamDecoder,
  InvalidFrameError,
  decodePayload,
  type CaptureFrame,
} from '../../native-bridge/runners/pytorchRunner';
import {
  applyByteMutations,
  applyJsonMutations,
  byteMutations,
  edgeJsonValue,
  jsonMutations,
  typedOutcome,
  type ByteMutation,
  type JsonMutation,
} from './fuzzing';

// ---------------------------------------------------------------------------------------------
// Webview messages.

export const VALID_WEBVIEW_MESSAGES: readonly Record<string, unknown>[] = [
  { type: 'ready', protocolVersion: PROTOCOL_VERSION },
  { type: 'reveal', runId: 'run-1', index: 3 },
  { type: 'selectPoint', runId: 'r', index: 0 },
  { type: 'annotate', runId: 'run-2', index: 65 },
  { type: 'chartImage', requestId: 'q1', dataUrl: 'data:image/png;base64,iVBORw0KGgo=' },
  { type: 'rerun' },
  { type: 'exportReport' },
];

const RUN_INDEX = ['runId', 'index'];
const FIELDS: Record<string, string[]> = {
  ready: ['protocolVersion'],
  reveal: RUN_INDEX,
  selectPoint: RUN_INDEX,
  annotate: RUN_INDEX,
  chartImage: ['requestId', 'dataUrl'],
  rerun: [],
  exportReport: [],
};

/**
 * An independent statement of what the guard may let through: one of the protocol's messages,
 * with exactly its fields, each in range.
 */
export function isExactWebviewMessage(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const message = value as Record<string, unknown>;
  const type = message.type;
  if (typeof type !== 'string' || !Object.prototype.hasOwnProperty.call(FIELDS, type)) return false;
  const keys = Object.keys(message).sort();
  if (keys.join() !== ['type', ...FIELDS[type]!].sort().join()) return false;
  const shortString = (v: unknown) => typeof v === 'string' && v.length <= 128;
  switch (type) {
    case 'ready':
      return message.protocolVersion === PROTOCOL_VERSION;
    case 'reveal':
    case 'selectPoint':
    case 'annotate':
      return (
        shortString(message.runId) &&
        Number.isInteger(message.index) &&
        (message.index as number) >= 0 &&
        (message.index as number) <= 10_000_000
      );
    case 'chartImage':
      return (
        shortString(message.requestId) &&
        typeof message.dataUrl === 'string' &&
        message.dataUrl.length <= 8e6 &&
        /^data:image\/png;base64,[A-Za-z0-9+/=]*$/.test(message.dataUrl)
      );
    default:
      return true;
  }
}

function checkGuard(value: unknown): void {
  // The guard's contract is undefined for a bad message: any exception at all fails the case.
  const outcome = typedOutcome(() => parseWebviewMessage(value), []);
  if (!outcome.ok) return;
  const parsed = outcome.value;
  if (parsed === undefined) {
    if (isExactWebviewMessage(value)) assert.fail(`refused ${fc.stringify(value).slice(0, 300)}`);
    return;
  }
  assert.equal(parsed, value, 'the guard returns the message it was given');
  if (!isExactWebviewMessage(parsed))
    assert.fail(`let through ${fc.stringify(value).slice(0, 300)}`);
}

/** Any value a postMessage can carry (structured-clonable), including prototype tricks. */
export function webviewAnythingProperty() {
  const anything = fc.anything({
    withBigInt: true,
    withBoxedValues: true,
    withDate: true,
    withMap: true,
    withSet: true,
    withNullPrototype: true,
    withObjectString: true,
    withSparseArray: true,
    withTypedArray: true,
    key: fc.oneof(
      fc.string(),
      fc.constantFrom('type', 'runId', 'index', '__proto__', 'constructor'),
    ),
  });
  return fc.property(anything, checkGuard);
}

/** Big data URLs, around the 8 MB bound, to bound the pattern check's time. */
const largeChartImages = fc
  .tuple(
    fc.constantFrom(8e6 - 23, 8e6 - 22, 8e6 - 21, 8e6 + 1, 2e7),
    fc.constantFrom('A', '=', '!', 'é'),
  )
  .map(([length, fill]) => ({
    type: 'chartImage',
    requestId: 'big',
    dataUrl: `data:image/png;base64,${fill.repeat(length - 22)}`,
  }));

/** Valid messages with fields replaced, removed, added or retyped. */
export function webviewMutationProperty() {
  const mutated = fc.oneof(
    {
      weight: 16,
      arbitrary: fc
        .tuple(fc.nat(VALID_WEBVIEW_MESSAGES.length - 1), jsonMutations())
        .map(([index, mutations]) => applyJsonMutations(VALID_WEBVIEW_MESSAGES[index], mutations)),
    },
    {
      weight: 8,
      arbitrary: fc.record(
        {
          type: fc.oneof(fc.constantFrom(...Object.keys(FIELDS)), edgeJsonValue),
          runId: fc.oneof(fc.string({ maxLength: 130 }), edgeJsonValue),
          index: fc.oneof(fc.integer({ min: -2, max: 10_000_002 }), edgeJsonValue),
          protocolVersion: fc.oneof(
            fc.integer({ min: -1, max: PROTOCOL_VERSION + 1 }),
            edgeJsonValue,
          ),
          requestId: fc.oneof(fc.string({ maxLength: 130 }), edgeJsonValue),
          dataUrl: fc.oneof(
            fc.stringMatching(/^data:image\/png;base64,[A-Za-z0-9+/=]{0,20}[\s\S]?$/),
            edgeJsonValue,
          ),
          extra: edgeJsonValue,
        },
        { requiredKeys: ['type'] },
      ),
    },
    { weight: 1, arbitrary: largeChartImages },
  );
  return fc.property(mutated, checkGuard);
}

// ---------------------------------------------------------------------------------------------
// Capture frames.

function frame(header: unknown, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const head = Buffer.from(JSON.stringify(header) ?? 'null', 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(head.length);
  return Buffer.concat([length, head, payload]);
}

interface StreamRecord {
  dtype: string;
  shape: number[];
  output: string;
  call: number;
  source: { file: string; line: number } | null;
  seed: number;
}

/** A valid stream's frames as header objects and payloads: hello, records, done (or error). */
export interface FrameList {
  frames: { header: Record<string, unknown>; payload: Uint8Array }[];
}

const streamRecord: fc.Arbitrary<StreamRecord> = fc.record({
  dtype: fc.constantFrom(...Object.keys(ELEMENT_BYTES)),
  shape: fc.array(fc.nat(4), { maxLength: 3 }),
  output: fc.constantFrom('', '0', '1', 'hidden', '0.1'),
  call: fc.integer({ min: 1, max: 3 }),
  source: fc.option(
    fc.record({
      file: fc.constantFrom('/m.py', 'model.py'),
      line: fc.integer({ min: 1, max: 900 }),
    }),
  ),
  seed: fc.nat(255),
});

export const validFrameLists: fc.Arbitrary<FrameList> = fc
  .tuple(fc.array(streamRecord, { maxLength: 5 }), fc.boolean())
  .map(([records, endsInError]) => {
    const frames: FrameList['frames'] = [
      {
        header: {
          type: 'hello',
          protocol: 1,
          torch: '2.4.0',
          device: 'cpu',
          dtype: 'float32',
          python: '3.12',
        },
        payload: new Uint8Array(0),
      },
    ];
    records.forEach((record, seq) => {
      const module = `model.layers.${seq}.mlp`;
      const byteLength = record.shape.reduce((p, d) => p * d, 1) * ELEMENT_BYTES[record.dtype]!;
      const payload = Uint8Array.from(
        { length: byteLength },
        (_, i) => (record.seed + i * 37) & 0xff,
      );
      frames.push({
        header: {
          type: 'record',
          name: `${module}#${record.call}/${record.output}`,
          seq,
          module,
          class: 'Linear',
          call: record.call,
          output: record.output,
          dtype: record.dtype,
          shape: record.shape,
          byteLength,
          source: record.source,
        },
        payload,
      });
    });
    frames.push(
      endsInError
        ? {
            header: { type: 'error', message: 'boom', traceback: 'Traceback…' },
            payload: new Uint8Array(0),
          }
        : { header: { type: 'done', records: records.length }, payload: new Uint8Array(0) },
    );
    return { frames };
  });

export function encodeFrames(list: FrameList): Buffer {
  return Buffer.concat(list.frames.map((f) => frame(f.header, f.payload)));
}

/** Cut points as fractions of the stream, so chunkings shrink and fit any length. */
const cuts = fc.array(fc.nat(1000), { maxLength: 8 });

function chunked(stream: Uint8Array, at: readonly number[]): Buffer[] {
  const points = [...new Set(at.map((c) => Math.floor((c / 1000) * stream.length)))].sort(
    (a, b) => a - b,
  );
  const chunks: Buffer[] = [];
  let start = 0;
  for (const point of [...points, stream.length]) {
    chunks.push(Buffer.from(stream.subarray(start, point)));
    start = point;
  }
  return chunks;
}

/** Feeds every chunk then ends; the frames, or the decoder's InvalidFrameError. */
function decode(chunks: readonly Uint8Array[]): CaptureFrame[] {
  const decoder = new CaptureStreamDecoder();
  const frames: CaptureFrame[] = [];
  for (const chunk of chunks) frames.push(...decoder.push(Buffer.from(chunk)));
  decoder.end();
  return frames;
}

/** What an accepted stream promises: hello first, records with payloads that decode. */
function checkFrames(frames: readonly CaptureFrame[]): void {
  if (frames.length === 0) return;
  const first = frames[0]!;
  assert.ok(first.type === 'hello' || first.type === 'error', `first frame is ${first.type}`);
  for (const f of frames) {
    if (f.type !== 'record') continue;
    assert.equal(f.payload.length, f.header.byteLength);
    const values = typedOutcome(() => decodePayload(f.header, f.payload), [EkkaError]);
    if (values.ok) {
      const count = f.header.shape.reduce((p, d) => p * d, 1);
      assert.equal(values.value.length, count, `${f.header.name}: value count`);
    }
  }
}

function checkDecoder(chunks: readonly Uint8Array[]): void {
  const outcome = typedOutcome(() => decode(chunks), [InvalidFrameError]);
  if (outcome.ok) checkFrames(outcome.value);
  else assert.ok((outcome.error as InvalidFrameError).offset >= 0);
}

/** Random chunks of random bytes, and random bytes after a valid hello. */
export function decoderRandomChunksProperty() {
  const hello = encodeFrames({
    frames: [
      {
        header: {
          type: 'hello',
          protocol: 1,
          torch: '2',
          device: 'cpu',
          dtype: 'float32',
          python: '3',
        },
        payload: new Uint8Array(0),
      },
    ],
  });
  return fc.property(
    fc.boolean(),
    fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }),
    (afterHello, chunks) => checkDecoder(afterHello ? [hello, ...chunks] : chunks),
  );
}

/** Valid streams, byte-mutated, cut into chunks anywhere. */
export function decoderMutatedStreamProperty() {
  return fc.property(
    validFrameLists.chain((list) => {
      const stream = encodeFrames(list);
      return fc.tuple(fc.constant(stream), byteMutations(stream.length, [[0, 96]]), cuts);
    }),
    ([stream, mutations, at]: [Buffer, ByteMutation[], number[]]) =>
      checkDecoder(chunked(applyByteMutations(stream, mutations), at)),
  );
}

/** Valid streams with one frame's header JSON mutated (lengths kept right), cut into chunks. */
export function decoderMutatedHeaderProperty() {
  return fc.property(
    validFrameLists,
    fc.nat(),
    jsonMutations(),
    cuts,
    (list: FrameList, which: number, mutations: JsonMutation[], at: number[]) => {
      const frames = list.frames.slice();
      const index = which % frames.length;
      frames[index] = {
        ...frames[index]!,
        header: applyJsonMutations(frames[index]!.header, mutations) as Record<string, unknown>,
      };
      checkDecoder(chunked(encodeFrames({ frames }), at));
    },
  );
}

/** An intact stream decodes to the same frames however it is cut. */
export function decoderChunkingProperty() {
  return fc.property(validFrameLists, cuts, (list, at) => {
    const stream = encodeFrames(list);
    const whole = decode([stream]);
    assert.deepEqual(decode(chunked(stream, at)), whole);
    assert.equal(whole.length, list.frames.length);
  });
}
