import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  SAFETENSORS_DTYPES,
  SafetensorsFile,
  encodeSafetensors,
  encodeTensorValues,
  findDuplicateJsonKey,
  numberToBfloat16Bits,
  numberToFloat16Bits,
  writeSafetensorsFile,
  type TensorToWrite,
} from '../../native-bridge/dump/safetensors';
import { EkkaError } from '../../native-bridge/errors';
import { bfloat16BitsToNumber, float16BitsToNumber } from '../../native-bridge/tensors/dtypes';
import { assertClose } from '../support/numbers';

/** A safetensors file from a header given as JSON text (or a value) and data bytes, unchecked. */
function rawFile(
  header: string | Uint8Array | object,
  data: Uint8Array | number = 0,
  claimedLength?: bigint,
) {
  const json =
    header instanceof Uint8Array
      ? Buffer.from(header)
      : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const bytes = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = Buffer.alloc(8 + json.length + bytes.length);
  out.writeBigUInt64LE(claimedLength ?? BigInt(json.length), 0);
  json.copy(out, 8);
  out.set(bytes, 8 + json.length);
  return out;
}

function u16Bytes(bits: number[]): Uint8Array {
  const out = Buffer.alloc(bits.length * 2);
  bits.forEach((b, i) => out.writeUInt16LE(b, i * 2));
  return out;
}

const LABEL = 'bad.safetensors';

describe('safetensors files', () => {
  let dir: string;
  let counter = 0;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-safetensors-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function put(bytes: Uint8Array): Promise<string> {
    const file = path.join(dir, `case-${counter++}.safetensors`);
    await fs.writeFile(file, bytes);
    return file;
  }

  /** Opening `bytes` must fail with exactly `message` after the file label. */
  async function rejects(bytes: Uint8Array, message: string): Promise<void> {
    const file = await put(bytes);
    await assert.rejects(SafetensorsFile.open(file, { file: LABEL }), (error: unknown) => {
      assert.ok(error instanceof EkkaError, `not an EkkaError: ${String(error)}`);
      assert.equal(error.kind, 'input');
      assert.equal(error.message, `${LABEL}: ${message}`);
      return true;
    });
  }

  const f32 = (shape: number[], begin: number, end: number) => ({
    dtype: 'F32',
    shape,
    data_offsets: [begin, end],
  });

  describe('hostile files fail with a message naming the file and the tensor', () => {
    it('file shorter than the length prefix', async () => {
      await rejects(new Uint8Array(5), 'file is 5 bytes, too short for the 8-byte header length');
    });

    it('header length past the end of the file', async () => {
      await rejects(
        rawFile('{}', 42, 1000n),
        'header length 1000 runs past the end of the file (44 bytes follow the length prefix)',
      );
    });

    it('a header length over the 100 MB cap, checked before anything is allocated', async () => {
      await rejects(
        rawFile('{}', 0, 100_000_001n),
        'header length 100000001 exceeds the 100 MB limit',
      );
      await rejects(
        rawFile('{}', 0, 2n ** 64n - 1n),
        'header length 18446744073709551615 exceeds the 100 MB limit',
      );
    });

    it('offsets past the end of the data section', async () => {
      await rejects(
        rawFile({ w: f32([8], 0, 32) }, 16),
        'tensor "w": data_offsets [0, 32] run past the end of the data section (16 bytes)',
      );
    });

    it('overlapping offsets', async () => {
      await rejects(
        rawFile({ a: f32([2], 0, 8), b: f32([2], 4, 12) }, 12),
        'tensor "b" data_offsets [4, 12] overlap tensor "a" data_offsets [0, 8]',
      );
    });

    it('holes between, before and after tensors', async () => {
      await rejects(
        rawFile({ a: f32([2], 0, 8), b: f32([2], 12, 20) }, 20),
        'data bytes 8 to 12 belong to no tensor (between tensor "a" and tensor "b")',
      );
      await rejects(
        rawFile({ a: f32([2], 4, 12) }, 12),
        'data bytes 0 to 4 belong to no tensor (before tensor "a")',
      );
      await rejects(
        rawFile({ a: f32([2], 0, 8) }, 10),
        'data bytes 8 to 10 belong to no tensor (after tensor "a")',
      );
      await rejects(
        rawFile({}, 3),
        'data bytes 0 to 3 belong to no tensor (the header lists no tensors)',
      );
    });

    it('shape × dtype size ≠ byte length, without integer overflow', async () => {
      await rejects(
        rawFile({ w: f32([2, 16], 0, 96) }, 96),
        'tensor "w": byte length 96 ≠ 4 × [2, 16] F32 = 128',
      );
      // 2^32 · 2^32 wraps to 0 in 64-bit arithmetic; the exact product does not.
      await rejects(
        rawFile({ w: { dtype: 'U8', shape: [2 ** 32, 2 ** 32], data_offsets: [0, 0] } }),
        'tensor "w": byte length 0 ≠ 1 × [4294967296, 4294967296] U8 = 18446744073709551616',
      );
      await rejects(
        rawFile({ w: { dtype: 'F32', shape: [2 ** 32, 2 ** 30], data_offsets: [0, 0] } }),
        'tensor "w": byte length 0 ≠ 4 × [4294967296, 1073741824] F32 = 18446744073709551616',
      );
      // A shape of 100 000 large dimensions is refused at once, not multiplied out.
      const many = Array.from({ length: 100_000 }, () => 2 ** 50);
      await rejects(
        rawFile({ w: { dtype: 'U8', shape: many, data_offsets: [0, 0] } }),
        `tensor "w": byte length 0 ≠ 1 × [${many.slice(0, 16).join(', ')}, … 99984 more] U8 = more than 18446744073709551616`,
      );
    });

    it('unknown dtype', async () => {
      await rejects(
        rawFile({ w: { dtype: 'X9', shape: [1], data_offsets: [0, 1] } }, 1),
        'tensor "w": dtype "X9" is not one of F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL',
      );
    });

    it('duplicate tensor names, also when spelled with escapes', async () => {
      const entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
      await rejects(
        rawFile(`{"w":${entry},"w":${entry}}`, 4),
        'tensor "w" appears twice in the header',
      );
      await rejects(
        rawFile(`{"w":${entry},"\\u0077":${entry}}`, 4),
        'tensor "w" appears twice in the header',
      );
      await rejects(
        rawFile('{"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}', 4),
        'tensor "w": key "dtype" appears twice',
      );
      await rejects(
        rawFile('{"__metadata__":{},"__metadata__":{}}'),
        '__metadata__ appears twice in the header',
      );
    });

    it('truncated file', async () => {
      const good = encodeSafetensors([
        { name: 'a', dtype: 'F32', shape: [2], bytes: new Uint8Array(8) },
        { name: 'b', dtype: 'F32', shape: [2], bytes: new Uint8Array(8) },
      ]);
      const headerLength = Number(Buffer.from(good).readBigUInt64LE(0));
      await rejects(
        good.subarray(0, good.length - 3),
        'tensor "b": data_offsets [8, 16] run past the end of the data section (13 bytes)',
      );
      await rejects(
        good.subarray(0, 20),
        `header length ${headerLength} runs past the end of the file (12 bytes follow the length prefix)`,
      );
    });

    it('header that is not JSON, not UTF-8, or not an object', async () => {
      let parseMessage = '';
      try {
        JSON.parse('{"w": nope}');
      } catch (error) {
        parseMessage = (error as Error).message;
      }
      await rejects(rawFile('{"w": nope}'), `header is not valid JSON (${parseMessage})`);
      await rejects(rawFile(Uint8Array.from([0x7b, 0xff, 0x7d])), 'header is not valid UTF-8');
      await rejects(rawFile('[1, 2]'), 'header is not a JSON object (it is an array)');
      await rejects(rawFile('"w"'), 'header is not a JSON object (it is a string)');
      await rejects(rawFile('null'), 'header is not a JSON object (it is null)');
    });

    it('negative, fractional and non-numeric shape entries', async () => {
      const withShape = (shape: unknown[]) =>
        rawFile({ w: { dtype: 'U8', shape, data_offsets: [0, 6] } }, 6);
      await rejects(withShape([-2, -3]), 'tensor "w": shape[0] is -2, not a non-negative integer');
      await rejects(withShape([6, 1.5]), 'tensor "w": shape[1] is 1.5, not a non-negative integer');
      await rejects(withShape(['6']), 'tensor "w": shape[0] is "6", not a non-negative integer');
      await rejects(
        withShape([1e300]),
        'tensor "w": shape[0] is 1e+300, not a non-negative integer',
      );
    });

    it('bad offsets and entries', async () => {
      const u8 = (offsets: unknown) =>
        rawFile({ w: { dtype: 'U8', shape: [1], data_offsets: offsets } }, 1);
      await rejects(
        u8([0, 1.5]),
        'tensor "w": data_offsets [0,1.5] is not two non-negative integers',
      );
      await rejects(
        u8([-1, 0]),
        'tensor "w": data_offsets [-1,0] is not two non-negative integers',
      );
      await rejects(u8([0]), 'tensor "w": data_offsets [0] is not two non-negative integers');
      await rejects(u8([1, 0]), 'tensor "w": data_offsets [1, 0] begin after they end');
      await rejects(rawFile({ w: 3 }), 'tensor "w": entry is a number, not an object');
      await rejects(
        rawFile({ w: { dtype: 'U8', shape: [] } }),
        'tensor "w": missing "data_offsets"',
      );
      await rejects(
        rawFile({ w: { dtype: 'U8', shape: [1], data_offsets: [0, 1], extra: 1 } }, 1),
        'tensor "w": unexpected field "extra"',
      );
      await rejects(
        rawFile({ __metadata__: { format: 1 } }),
        '__metadata__ "format" is a number, not a string',
      );
      await rejects(
        rawFile({ __metadata__: [] }),
        '__metadata__ is an array, not an object of strings',
      );
    });

    it('a file that shrinks after it was opened', async () => {
      const file = await put(
        encodeSafetensors([{ name: 'a', dtype: 'F32', shape: [4], bytes: new Uint8Array(16) }]),
      );
      const opened = await SafetensorsFile.open(file, { file: LABEL });
      try {
        await fs.truncate(file, opened.header.dataOffset + 6);
        await assert.rejects(opened.readTensor('a'), {
          message: `${LABEL}: tensor "a": file ended at byte ${opened.header.dataOffset + 6} while reading it (the file changed after it was opened)`,
        });
        await opened.close();
        await assert.rejects(opened.readTensor('a'), {
          message: `${LABEL}: file is now ${opened.header.dataOffset + 6} bytes, ${opened.size} when it was opened (it changed)`,
        });
      } finally {
        await opened.close();
      }
    });
  });

  describe('writing', () => {
    it('pads the header with spaces to 8-byte alignment and round-trips every dtype', async () => {
      const tensors: TensorToWrite[] = [
        {
          name: 'bool',
          dtype: 'BOOL',
          shape: [3],
          bytes: encodeTensorValues('BOOL', [1, 0, 1], 'bool'),
        },
        {
          name: 'f64',
          dtype: 'F64',
          shape: [2],
          bytes: encodeTensorValues('F64', [Math.PI, -1e300], 'f64'),
        },
        { name: 'i8', dtype: 'I8', shape: [2], bytes: encodeTensorValues('I8', [-128, 127], 'i8') },
        {
          name: 'f32',
          dtype: 'F32',
          shape: [1, 2],
          bytes: encodeTensorValues('F32', [0.5, -2], 'f32'),
        },
        {
          name: 'i64',
          dtype: 'I64',
          shape: [2],
          bytes: encodeTensorValues('I64', [-(2 ** 53), 7], 'i64'),
        },
        { name: 'u16', dtype: 'U16', shape: [1], bytes: encodeTensorValues('U16', [65535], 'u16') },
        { name: 'empty', dtype: 'F16', shape: [0, 4], bytes: new Uint8Array(0) },
      ];
      const file = path.join(dir, 'written.safetensors');
      await writeSafetensorsFile(file, tensors, { format: 'pt' });
      const bytes = await fs.readFile(file);
      const headerLength = Number(bytes.readBigUInt64LE(0));
      assert.equal((8 + headerLength) % 8, 0);
      const headerText = bytes.subarray(8, 8 + headerLength).toString('utf8');
      assert.match(headerText, /^\{"__metadata__":\{"format":"pt"\},/);
      assert.match(headerText, /\} *$/);
      assert.equal((await fs.readdir(dir)).filter((name) => name.endsWith('.tmp')).length, 0);

      const opened = await SafetensorsFile.open(file);
      try {
        assert.deepEqual(opened.header.metadata, { format: 'pt' });
        // Larger elements first, so each tensor is aligned to its type.
        for (const entry of opened.header.tensors.values()) {
          assert.equal(entry.begin % SAFETENSORS_DTYPES[entry.dtype].size, 0, entry.name);
        }
        const values = async (name: string) => Array.from((await opened.readTensor(name)).data);
        assert.deepEqual(await values('bool'), [1, 0, 1]);
        assert.deepEqual(await values('f64'), [Math.PI, -1e300]);
        assert.deepEqual(await values('i8'), [-128, 127]);
        assert.deepEqual(await values('f32'), [0.5, -2]);
        assert.deepEqual(await values('i64'), [-(2 ** 53), 7]);
        assert.deepEqual(await values('u16'), [65535]);
        assert.deepEqual(await values('empty'), []);
        assert.deepEqual((await opened.readTensor('f32')).shape, [1, 2]);
        assert.ok((await opened.readTensor('f32')).data instanceof Float32Array);
        assert.ok((await opened.readTensor('i64')).data instanceof Float64Array);
      } finally {
        await opened.close();
      }
    });

    it('refuses what a reader would refuse', () => {
      const bytes = new Uint8Array(4);
      assert.throws(
        () =>
          encodeSafetensors([
            { name: 'a', dtype: 'F32', shape: [1], bytes },
            { name: 'a', dtype: 'F32', shape: [1], bytes },
          ]),
        { message: 'safetensors file: tensor "a" appears twice' },
      );
      assert.throws(() => encodeSafetensors([{ name: 'a', dtype: 'F32', shape: [2], bytes }]), {
        message: 'safetensors file: tensor "a": byte length 4 ≠ 4 × [2] F32 = 8',
      });
      assert.throws(
        () => encodeSafetensors([{ name: '__metadata__', dtype: 'F32', shape: [1], bytes }]),
        {
          message: 'safetensors file: tensor "__metadata__": the name is reserved for metadata',
        },
      );
      assert.throws(() => encodeTensorValues('I32', [1, 2.5], 'tensor "x"'), {
        message: 'tensor "x": value 2.5 at index 1 is not a valid I32',
      });
      assert.throws(() => encodeTensorValues('U8', [256], 'tensor "x"'), {
        message: 'tensor "x": value 256 at index 0 is not a valid U8',
      });
    });

    it('reads a tensor by its byte range, not the whole file', async () => {
      const big = new Uint8Array(32 * 2 ** 20);
      const file = path.join(dir, 'big.safetensors');
      await writeSafetensorsFile(file, [
        { name: 'big', dtype: 'U8', shape: [big.length], bytes: big },
        { name: 'small', dtype: 'U8', shape: [3], bytes: Uint8Array.from([1, 2, 3]) },
      ]);
      const opened = await SafetensorsFile.open(file);
      const handle = (opened as unknown as { handle: fs.FileHandle }).handle;
      const read = handle.read.bind(handle);
      let requested = 0;
      (handle as { read: unknown }).read = (
        buffer: Uint8Array,
        offset: number,
        length: number,
        position: number,
      ) => {
        requested += length;
        return read(buffer, offset, length, position);
      };
      try {
        assert.deepEqual(Array.from((await opened.readTensor('small')).data), [1, 2, 3]);
        assert.equal(requested, 3);
      } finally {
        await opened.close();
      }
    });
  });

  describe('fp16 and bf16', () => {
    it('decodes known bit patterns', async () => {
      const f16: [number, number][] = [
        [0x3c00, 1],
        [0xc000, -2],
        [0x7bff, 65504],
        [0x0001, 2 ** -24],
        [0x0400, 2 ** -14],
        [0x3555, 0.333251953125],
        [0x7c00, Infinity],
        [0xfc00, -Infinity],
        [0x7e00, NaN],
        [0x8000, -0],
      ];
      const bf16: [number, number][] = [
        [0x3f80, 1],
        [0xc040, -3],
        [0x4049, 3.140625],
        [0x7f7f, 3.3895313892515355e38],
        [0x0001, 2 ** -133],
        [0x0080, 2 ** -126],
        [0x7f80, Infinity],
        [0x7fc0, NaN],
      ];
      const file = path.join(dir, 'half.safetensors');
      await writeSafetensorsFile(file, [
        {
          name: 'h',
          dtype: 'F16',
          shape: [f16.length],
          bytes: u16Bytes(f16.map(([bits]) => bits)),
        },
        {
          name: 'b',
          dtype: 'BF16',
          shape: [bf16.length],
          bytes: u16Bytes(bf16.map(([bits]) => bits)),
        },
      ]);
      const opened = await SafetensorsFile.open(file);
      try {
        for (const [name, table] of [
          ['h', f16],
          ['b', bf16],
        ] as const) {
          const { data } = await opened.readTensor(name);
          assert.ok(data instanceof Float32Array);
          table.forEach(([bits, expected], i) =>
            assertClose(data[i]!, expected, { atol: 0, rtol: 0 }, `${name} 0x${bits.toString(16)}`),
          );
        }
        assert.ok(Object.is((await opened.readTensor('h')).data[9], -0));
      } finally {
        await opened.close();
      }
    });

    it('encodes with round-to-nearest-even, every bit pattern round-tripping', () => {
      for (let bits = 0; bits < 0x10000; bits++) {
        const half = float16BitsToNumber(bits);
        if (!Number.isNaN(half))
          assert.equal(numberToFloat16Bits(half), bits, `f16 0x${bits.toString(16)}`);
        const brain = bfloat16BitsToNumber(bits);
        if (!Number.isNaN(brain))
          assert.equal(numberToBfloat16Bits(brain), bits, `bf16 0x${bits.toString(16)}`);
      }
      assert.equal(numberToFloat16Bits(1 + 2 ** -11), 0x3c00); // tie → even
      assert.equal(numberToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
      assert.equal(numberToFloat16Bits(65519), 0x7bff);
      assert.equal(numberToFloat16Bits(65520), 0x7c00);
      assert.equal(numberToFloat16Bits(2 ** -25), 0x0000);
      assert.equal(numberToFloat16Bits(3 * 2 ** -25), 0x0002);
      assert.equal(numberToFloat16Bits(2 ** -14 - 2 ** -25), 0x0400);
      assert.equal(numberToFloat16Bits(NaN), 0x7e00);
      assert.equal(numberToBfloat16Bits(1 + 2 ** -8), 0x3f80);
      assert.equal(numberToBfloat16Bits(1 + 3 * 2 ** -8), 0x3f82);
      assert.equal(numberToBfloat16Bits(-1e39), 0xff80);
      assert.equal(numberToBfloat16Bits(NaN), 0x7fc0);
    });
  });

  describe('duplicate JSON keys', () => {
    it('finds the first repeated key and where it sits', () => {
      assert.equal(findDuplicateJsonKey('{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}'), undefined);
      assert.deepEqual(findDuplicateJsonKey('{"a":1,"b":2,"a":3}'), { key: 'a', path: [] });
      assert.deepEqual(findDuplicateJsonKey('{"x":[1,{"k":"\\"}","k":0}]}'), {
        key: 'k',
        path: ['x', '1'],
      });
      assert.deepEqual(findDuplicateJsonKey('{"a":"{\\"a\\":1}","\\u0061":2}'), {
        key: 'a',
        path: [],
      });
    });
  });
});
