import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDump } from '../../native-bridge/dump/dumpReader';
import { writeDump } from '../../native-bridge/dump/dumpWriter';
import { MAX_MANIFEST_BYTES, type DumpManifest } from '../../native-bridge/dump/manifest';
import { SafetensorsFile } from '../../native-bridge/dump/safetensors';
import { EkkaError } from '../../native-bridge/errors';
import type { CapturedRecord } from '../../native-bridge/runners/capturedRecord';
import { seededRandom } from '../support/numbers';
import { SAMPLE_CAPTURE_INFO as INFO, capturedRecord as record } from '../support/sampleDump';

/** Records covering every stored kind: fp16/bf16 with known values, ints, bool, empty, ranks. */
function sampleRecords(): CapturedRecord[] {
  return [
    record('model.embed#1/', 0, 'bfloat16', [2, 3], [1, -3, 3.140625, 2 ** -133, -0, 0.5], {
      source: { file: '/src/model.py', line: 12 },
    }),
    record('model.layers.0.attn#1/0', 1, 'float16', [5], [1, -2, 65504, 2 ** -24, 0.333251953125]),
    record('model.layers.0.attn#1/1', 2, 'float32', [2, 2], [0.1, -0.2, 1e30, -1e-30]),
    record('model.layers.0.mlp#1/', 3, 'float64', [3], [Math.PI, -Math.E, 1e-300]),
    record('model.ids#1/', 4, 'int64', [3], [-(2 ** 53), 0, 2 ** 40]),
    record('model.mask#1/', 5, 'bool', [4], [1, 0, 0, 1]),
    record('model.pos#1/', 6, 'int32', [2], [-7, 2 ** 31 - 1]),
    record('model.empty#1/', 7, 'float32', [0, 16], []),
    record('model.layers.0.qkv#2/', 8, 'bfloat16', [2], [2, -4], { rank: 1 }),
  ];
}

/** A manifest as JSON, to break on purpose. */
interface LooseManifest {
  records: Record<string, unknown>[];
  [field: string]: unknown;
}

/** The exact EkkaError an opening must fail with. */
async function rejectsWith(dir: string, message: string): Promise<void> {
  await assert.rejects(openDump(dir), (error: unknown) => {
    assert.ok(error instanceof EkkaError, `not an EkkaError: ${String(error)}`);
    assert.equal(error.kind, 'input');
    assert.equal(error.message, message);
    return true;
  });
}

async function readAll(dir: string): Promise<CapturedRecord[]> {
  const dump = await openDump(dir);
  const out: CapturedRecord[] = [];
  for await (const captured of dump.records()) out.push(captured);
  return out;
}

describe('dumps', () => {
  let root: string;
  let counter = 0;

  before(async () => {
    root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-dump-')));
  });
  after(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  async function freshDump(options: { maxFileBytes?: number } = {}): Promise<string> {
    const dir = path.join(root, `dump-${counter++}`);
    await writeDump(dir, INFO, sampleRecords(), { input: 'input.json', ...options });
    return dir;
  }

  async function readManifestJson(dir: string): Promise<DumpManifest> {
    return JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8')) as DumpManifest;
  }

  async function editManifest(dir: string, edit: (manifest: DumpManifest) => void): Promise<void> {
    const manifest = await readManifestJson(dir);
    edit(manifest);
    await fs.writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  }

  describe('round trip', () => {
    it('reads back what was written, in seq order, with the capture info', async () => {
      const dir = await freshDump();
      const dump = await openDump(dir);
      assert.deepEqual(dump.info, { ...INFO, records: 9 });
      assert.equal(dump.manifest.input, 'input.json');
      const read: CapturedRecord[] = [];
      for await (const captured of dump.records()) read.push(captured);
      assert.deepStrictEqual(read, sampleRecords());
    });

    it('stores fp16 and bf16 as their own bits and decodes them to the known values', async () => {
      const dir = await freshDump();
      const manifest = await readManifestJson(dir);
      const file = await SafetensorsFile.open(path.join(dir, manifest.records[0]!.file));
      try {
        const bf16 = Buffer.from(await file.readTensorBytes('model.embed#1/'));
        assert.deepEqual(
          Array.from({ length: 6 }, (_, i) => bf16.readUInt16LE(2 * i)),
          [0x3f80, 0xc040, 0x4049, 0x0001, 0x8000, 0x3f00],
        );
        const f16 = Buffer.from(await file.readTensorBytes('model.layers.0.attn#1/0'));
        assert.deepEqual(
          Array.from({ length: 5 }, (_, i) => f16.readUInt16LE(2 * i)),
          [0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555],
        );
      } finally {
        await file.close();
      }
      const [embed, attn] = await readAll(dir);
      assert.deepEqual(Array.from(embed!.data), [1, -3, 3.140625, 2 ** -133, -0, 0.5]);
      assert.ok(Object.is(embed!.data[4], -0));
      assert.ok(embed!.data instanceof Float32Array);
      assert.deepEqual(Array.from(attn!.data), [1, -2, 65504, 2 ** -24, 0.333251953125]);
    });

    it('splits tensors into files of bounded size and leaves no temporary files', async () => {
      const dir = await freshDump({ maxFileBytes: 24 });
      const names = (await fs.readdir(dir)).sort();
      assert.ok(names.length > 3, names.join(', '));
      assert.ok(
        names.every(
          (name) => name === 'manifest.json' || /^tensors-\d{5}\.safetensors$/.test(name),
        ),
      );
      for (const name of names.filter((n) => n.endsWith('.safetensors'))) {
        const file = await SafetensorsFile.open(path.join(dir, name));
        // Only a single tensor larger than the bound may exceed it.
        assert.ok(file.header.dataLength <= 24 || file.header.tensors.size === 1, name);
        await file.close();
      }
      assert.deepStrictEqual(await readAll(dir), sampleRecords());
    });

    it('accepts records as a stream, reads by name, and orders by seq whatever the manifest order', async () => {
      const dir = path.join(root, `dump-${counter++}`);
      async function* stream(): AsyncIterable<CapturedRecord> {
        for (const captured of sampleRecords()) {
          await new Promise((resolve) => setImmediate(resolve));
          yield captured;
        }
      }
      await writeDump(dir, INFO, stream());
      await editManifest(dir, (manifest) => manifest.records.reverse());
      const dump = await openDump(dir);
      assert.deepEqual(
        dump.entries.map((entry) => entry.seq),
        [0, 1, 2, 3, 4, 5, 6, 7, 8],
      );
      const mlp = await dump.readRecord('model.layers.0.mlp#1/');
      assert.deepEqual(Array.from(mlp.data), [Math.PI, -Math.E, 1e-300]);
      await assert.rejects(dump.readRecord('nope'), {
        message: `${path.join(dir, 'manifest.json')}: no record named "nope"`,
      });
      await dump.close();
      assert.deepStrictEqual(await readAll(dir), sampleRecords());
    });

    it('keeps few files open at once', async () => {
      const dir = await freshDump({ maxFileBytes: 1 });
      const dump = await openDump(dir, { maxOpenFiles: 2 });
      const read: CapturedRecord[] = [];
      for await (const captured of dump.records()) read.push(captured);
      assert.deepStrictEqual(read, sampleRecords());
    });

    it('refuses to overwrite unless asked, and then leaves no stale files', async () => {
      const dir = await freshDump({ maxFileBytes: 1 });
      await assert.rejects(writeDump(dir, INFO, []), {
        message: `${dir}: already holds a dump (manifest.json); pass overwrite to replace it`,
      });
      await writeDump(dir, INFO, sampleRecords().slice(0, 2), { overwrite: true });
      assert.deepEqual((await fs.readdir(dir)).sort(), [
        'manifest.json',
        'tensors-00000.safetensors',
      ]);
      assert.deepStrictEqual(await readAll(dir), sampleRecords().slice(0, 2));
    });

    it('writes an empty dump', async () => {
      const dir = path.join(root, `dump-${counter++}`);
      await writeDump(dir, { framework: 'pytorch', model: 'm', records: 0 }, []);
      const dump = await openDump(dir);
      assert.deepEqual(dump.info, { framework: 'pytorch', model: 'm', records: 0 });
      assert.deepEqual(await readAll(dir), []);
    });

    it('refuses records the reader would refuse, and removes what it wrote', async () => {
      const dir = path.join(root, `dump-${counter++}`);
      const fails = async (records: CapturedRecord[], message: string) => {
        await assert.rejects(writeDump(dir, INFO, records, { maxFileBytes: 1, overwrite: true }), {
          message: `${dir}: ${message}`,
        });
        assert.deepEqual(await fs.readdir(dir), []);
      };
      const good = sampleRecords();
      await fails(
        [...good, record('x#1/', 9, 'float32', [2, 3], [1, 2])],
        'records[9] "x#1/": 2 values, but shape [2, 3] holds 6',
      );
      await fails(
        [good[0]!, good[0]!],
        'records[1] "model.embed#1/": name used by an earlier record',
      );
      await fails(
        [...good, record('x#1/', 9, 'string', [1], [0])],
        'records[9] "x#1/": dtype "string" cannot be stored in a dump',
      );
      await fails(
        [...good, record('x#1/', 9, 'int32', [1], [0.5])],
        'records[9] "x#1/": value 0.5 at index 0 is not a valid I32',
      );
      await fails(
        [...good, record('x#1/', -1, 'float32', [1], [0])],
        'records[9] "x#1/": seq -1 is not a non-negative integer',
      );
    });
  });

  describe('hostile dumps fail with a message naming the file and the record', () => {
    it('duplicate record names', async () => {
      const dir = await freshDump();
      await editManifest(dir, (manifest) => {
        manifest.records[3]!.name = manifest.records[1]!.name;
      });
      await rejectsWith(
        dir,
        `${path.join(dir, 'manifest.json')}: records[3] "model.layers.0.attn#1/0": name already used by records[1]`,
      );
    });

    it('a file outside the folder through ..', async () => {
      const dir = await freshDump();
      await fs.copyFile(
        path.join(dir, 'tensors-00000.safetensors'),
        path.join(root, 'x.safetensors'),
      );
      await editManifest(dir, (manifest) => {
        manifest.records[0]!.file = '../x.safetensors';
      });
      await rejectsWith(
        dir,
        `${path.join(dir, 'manifest.json')}: records[0] "model.embed#1/": file "../x.safetensors" is outside the dump folder`,
      );
      await editManifest(dir, (manifest) => {
        manifest.records[0]!.file = 'sub/../../x.safetensors';
      });
      await rejectsWith(
        dir,
        `${path.join(dir, 'manifest.json')}: records[0] "model.embed#1/": file "sub/../../x.safetensors" is outside the dump folder`,
      );
    });

    it('an absolute path', async () => {
      const dir = await freshDump();
      const absolute = path.join(dir, 'tensors-00000.safetensors');
      await editManifest(dir, (manifest) => {
        manifest.records[2]!.file = absolute;
      });
      await rejectsWith(
        dir,
        `${path.join(dir, 'manifest.json')}: records[2] "model.layers.0.attn#1/1": file ${JSON.stringify(absolute)} is an absolute path; files are named relative to the dump folder`,
      );
    });

    it('a symlink escaping the folder, to a file or through a folder', async () => {
      const dir = await freshDump();
      const outside = path.join(root, `outside-${counter++}`);
      await fs.mkdir(outside);
      await fs.copyFile(
        path.join(dir, 'tensors-00000.safetensors'),
        path.join(outside, 't.safetensors'),
      );
      await fs.symlink(path.join(outside, 't.safetensors'), path.join(dir, 'link.safetensors'));
      await fs.symlink(outside, path.join(dir, 'linked-folder'));
      await editManifest(dir, (manifest) => {
        manifest.records[0]!.file = 'link.safetensors';
      });
      await rejectsWith(
        dir,
        `${path.join(dir, 'manifest.json')}: records[0] "model.embed#1/": file "link.safetensors" resolves to ${path.join(outside, 't.safetensors')}, outside the dump folder`,
      );
      await editManifest(dir, (manifest) => {
        manifest.records[0]!.file = 'linked-folder/t.safetensors';
      });
      await rejectsWith(
        dir,
        `${path.join(dir, 'manifest.json')}: records[0] "model.embed#1/": file "linked-folder/t.safetensors" resolves to ${path.join(outside, 't.safetensors')}, outside the dump folder`,
      );
    });

    it('a symlink that stays inside the folder is fine', async () => {
      const dir = await freshDump();
      await fs.symlink('tensors-00000.safetensors', path.join(dir, 'alias.safetensors'));
      await editManifest(dir, (manifest) => {
        for (const entry of manifest.records) {
          if (entry.file === 'tensors-00000.safetensors') entry.file = 'alias.safetensors';
        }
      });
      assert.deepStrictEqual(await readAll(dir), sampleRecords());
    });

    it('a missing file, a folder, a missing tensor', async () => {
      const dir = await freshDump();
      const manifestFile = path.join(dir, 'manifest.json');
      await editManifest(dir, (manifest) => {
        manifest.records[1]!.file = 'gone.safetensors';
      });
      await rejectsWith(
        dir,
        `${manifestFile}: records[1] "model.layers.0.attn#1/0": file "gone.safetensors" not found`,
      );
      await fs.mkdir(path.join(dir, 'folder'));
      await editManifest(dir, (manifest) => {
        manifest.records[1]!.file = 'folder';
      });
      await rejectsWith(
        dir,
        `${manifestFile}: records[1] "model.layers.0.attn#1/0": file "folder" is not a regular file`,
      );
      await editManifest(dir, (manifest) => {
        manifest.records[1]!.file = 'tensors-00000.safetensors';
        manifest.records[1]!.key = 'nope';
      });
      await rejectsWith(
        dir,
        `${manifestFile}: records[1] "model.layers.0.attn#1/0": tensor "nope" in tensors-00000.safetensors does not exist`,
      );
    });

    it('a manifest dtype or shape that disagrees with the tensor', async () => {
      const dir = await freshDump();
      const manifestFile = path.join(dir, 'manifest.json');
      await editManifest(dir, (manifest) => {
        manifest.records[0]!.dtype = 'float16';
      });
      await rejectsWith(
        dir,
        `${manifestFile}: records[0] "model.embed#1/": dtype float16 ≠ BF16 (bfloat16) of tensor "model.embed#1/" in tensors-00000.safetensors`,
      );
      await editManifest(dir, (manifest) => {
        manifest.records[0]!.dtype = 'bfloat16';
        manifest.records[0]!.shape = [3, 2];
      });
      await rejectsWith(
        dir,
        `${manifestFile}: records[0] "model.embed#1/": shape [3, 2] ≠ [2, 3] of tensor "model.embed#1/" in tensors-00000.safetensors`,
      );
    });

    it('a tensor whose bytes do not match its shape names the record that uses it', async () => {
      const dir = path.join(root, `dump-${counter++}`);
      await fs.mkdir(dir);
      const header = JSON.stringify({
        t3: { dtype: 'F32', shape: [2, 16], data_offsets: [0, 96] },
      });
      const bytes = Buffer.alloc(8 + header.length + 96);
      bytes.writeBigUInt64LE(BigInt(header.length));
      bytes.write(header, 8);
      await fs.writeFile(path.join(dir, 'part.safetensors'), bytes);
      const manifest: DumpManifest = {
        format: 'ekka-dump',
        version: 1,
        framework: 'pytorch',
        model: 'm',
        records: [
          {
            name: 'model.layers.0.mlp#1/',
            seq: 0,
            kind: 'module-output',
            module: 'model.layers.0.mlp',
            class: 'LlamaMLP',
            call: 1,
            output: '',
            dtype: 'float32',
            shape: [2, 16],
            file: 'part.safetensors',
            key: 't3',
          },
        ],
      };
      await fs.writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
      await rejectsWith(
        dir,
        `${path.join(dir, 'part.safetensors')}: tensor "t3" (records[0] "model.layers.0.mlp#1/"): byte length 96 ≠ 4 × [2, 16] F32 = 128`,
      );
    });

    it('a truncated tensor file', async () => {
      const dir = await freshDump();
      const file = path.join(dir, 'tensors-00000.safetensors');
      const { size } = await fs.stat(file);
      await fs.truncate(file, size - 1);
      const opened = await assert.rejects(openDump(dir), (error: unknown) => {
        assert.ok(error instanceof EkkaError);
        assert.match(
          error.message,
          new RegExp(
            `^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: tensor "[^"]+" \\(records\\[\\d\\] "[^"]+"\\): data_offsets \\[\\d+, \\d+\\] run past the end of the data section \\(\\d+ bytes\\)$`,
          ),
        );
        return true;
      });
      assert.equal(opened, undefined);
    });

    it('manifest problems: missing, not JSON, wrong format or version, bad fields, limits', async () => {
      const dir = await freshDump();
      const manifestFile = path.join(dir, 'manifest.json');
      const original = await fs.readFile(manifestFile, 'utf8');
      const withText = async (text: string | Uint8Array, message: string) => {
        await fs.writeFile(manifestFile, text);
        await rejectsWith(dir, `${manifestFile}: ${message}`);
      };
      const withManifest = (edit: (manifest: LooseManifest) => void, message: string) => {
        const manifest = JSON.parse(original) as LooseManifest;
        edit(manifest);
        return withText(JSON.stringify(manifest), message);
      };

      await fs.rm(manifestFile);
      await rejectsWith(dir, `${manifestFile}: file not found (is this a dump folder?)`);
      let parseMessage = '';
      try {
        JSON.parse('{"format":');
      } catch (error) {
        parseMessage = (error as Error).message;
      }
      await withText('{"format":', `not valid JSON (${parseMessage})`);
      await withText(Uint8Array.from([0x7b, 0xc3, 0x28, 0x7d]), 'not valid UTF-8');
      await withText('[]', 'not a JSON object');
      await withManifest((m) => {
        m.format = 'other';
      }, 'not an Ekka dump manifest (format is "other", not "ekka-dump")');
      await withManifest((m) => {
        m.version = 2;
      }, 'dump format version 2 is not supported (this reader knows version 1)');
      await withManifest((m) => {
        delete m.records[4]!.key;
      }, 'records[4] "model.ids#1/": missing "key"');
      await withManifest((m) => {
        m.records[2]!.clas = 'Linear';
      }, 'records[2] "model.layers.0.attn#1/1": unexpected field "clas"');
      await withManifest((m) => {
        m.records[2]!.seq = -1;
      }, 'records[2] "model.layers.0.attn#1/1": seq must be >= 0');
      await withManifest((m) => {
        m.records[2]!.shape = [2, 2.5];
      }, 'records[2] "model.layers.0.attn#1/1": shape/1 must be integer');
      await withManifest((m) => {
        m.records[2]!.dtype = 'float8';
      }, 'records[2] "model.layers.0.attn#1/1": dtype must be one of float64, float32, float16, bfloat16, int64, int32, int16, int8, uint64, uint32, uint16, uint8, bool');
      await withManifest((m) => {
        m.records[2]!.kind = 'weight';
      }, 'records[2] "model.layers.0.attn#1/1": kind must be "module-output"');
      await withManifest((m) => {
        m.records = Array.from({ length: 1_000_001 }, () => ({}));
      }, '1000001 records, over the limit of 1000000');
      await withText(
        original.replace('"seq":3,', '"seq":3,"seq":4,'),
        'records[3] "model.layers.0.mlp#1/": key "seq" appears twice',
      );
      await fs.writeFile(manifestFile, '');
      await fs.truncate(manifestFile, MAX_MANIFEST_BYTES + 1);
      await rejectsWith(
        dir,
        `${manifestFile}: ${MAX_MANIFEST_BYTES + 1} bytes, over the 64 MiB limit`,
      );
    });
  });

  it('300 random byte mutations and truncations only ever fail with an EkkaError', async function () {
    this.timeout(120_000);
    const dir = await freshDump({ maxFileBytes: 40 });
    const names = (await fs.readdir(dir)).sort();
    const originals = new Map<string, Buffer>();
    for (const name of names) originals.set(name, await fs.readFile(path.join(dir, name)));
    const random = seededRandom(20250101);
    const outcomes = { read: 0, refused: 0 };
    for (let trial = 0; trial < 300; trial++) {
      const name = names[Math.floor(random() * names.length)]!;
      const original = originals.get(name)!;
      const mutated = Buffer.from(original);
      let change: string;
      if (random() < 0.25) {
        const length = Math.floor(random() * original.length);
        change = `truncated to ${length}`;
        await fs.writeFile(path.join(dir, name), mutated.subarray(0, length));
      } else {
        // Headers are where parsing happens: aim most mutations at the first bytes.
        const span = random() < 0.7 ? Math.min(original.length, 200) : original.length;
        const at = Math.floor(random() * span);
        mutated[at] = Math.floor(random() * 256);
        change = `byte ${at} set to ${mutated[at]}`;
        await fs.writeFile(path.join(dir, name), mutated);
      }
      try {
        await readAll(dir);
        outcomes.read++;
      } catch (error) {
        assert.ok(
          error instanceof EkkaError,
          `${name} ${change}: ${error instanceof Error ? error.stack : String(error)}`,
        );
        outcomes.refused++;
      }
      await fs.writeFile(path.join(dir, name), original);
    }
    assert.equal(outcomes.read + outcomes.refused, 300);
    assert.ok(outcomes.refused > 50, `only ${outcomes.refused} mutations were refused`);
  });
});
