/**
 * Fuzz properties of the dump reader: safetensors headers, manifests, and whole dump folders whose
 * files were mutated. The reader may refuse anything, but only with an EkkaError naming the file,
 * and what it accepts must be consistent.
 */
import * as assert from 'node:assert/strict';
import * as fc from 'fast-check';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDump } from '../../native-bridge/dump/dumpReader';
import { formatManifest, writeDump } from '../../native-bridge/dump/dumpWriter';
import { MANIFEST_FILE, parseManifest } from '../../native-bridge/dump/manifest';
import {
  SAFETENSORS_DTYPES,
  encodeSafetensors,
  parseSafetensorsHeader,
  type SafetensorsDType,
  type SafetensorsHeader,
} from '../../native-bridge/dump/safetensors';
import { EkkaError } from '../../native-bridge/errors';
import type { CaptureInfo, CapturedRecord } from '../../native-bridge/runners/capturedRecord';
import { SAMPLE_CAPTURE_INFO, capturedRecord as record } from '../support/sampleDump';
import {
  applyByteMutations,
  applyJsonMutations,
  byteMutations,
  edgeJsonValue,
  jsonMutations,
  typedOutcome,
  typedOutcomeAsync,
  type ByteMutation,
  type JsonMutation,
} from './fuzzing';

const FILE_LABEL = 'fuzz.safetensors';

function assertNamesFile(error: Error, file: string): void {
  assert.ok(error instanceof EkkaError, String(error));
  assert.equal(error.file, file, `error does not name ${file}: ${error.message}`);
}

/** What an accepted header promises: tensors tile the data section and fit their shapes. */
function assertConsistentHeader(header: SafetensorsHeader, dataLength: number): void {
  const entries = [...header.tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (const entry of entries) {
    assert.equal(entry.begin, covered, `tensor ${entry.name} leaves a hole or overlaps`);
    const count = entry.shape.reduce((product, dim) => product * dim, 1);
    assert.equal(entry.end - entry.begin, count * SAFETENSORS_DTYPES[entry.dtype].size);
    covered = entry.end;
  }
  assert.equal(covered, dataLength, 'tensors do not cover the data section');
  for (const value of Object.values(header.metadata)) assert.equal(typeof value, 'string');
}

/** A valid file with several dtypes, metadata and an empty tensor: the seed of the mutations. */
export function sampleSafetensors(): Uint8Array {
  const f32 = new Uint8Array(new Float32Array([1, -2, 3.5, 1e-30, 0, 7]).buffer);
  return encodeSafetensors(
    [
      { name: 'model.layers.0.attn#1/0', dtype: 'F32', shape: [2, 3], bytes: f32 },
      {
        name: 'model.embed#1/',
        dtype: 'BF16',
        shape: [4],
        bytes: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8),
      },
      { name: 'model.ids#1/', dtype: 'I64', shape: [1], bytes: new Uint8Array(8).fill(0xff) },
      { name: 'model.mask#1/', dtype: 'BOOL', shape: [3], bytes: Uint8Array.of(1, 0, 1) },
      { name: 'model.empty#1/', dtype: 'F16', shape: [0, 16], bytes: new Uint8Array(0) },
    ],
    { producer: 'fuzz' },
  );
}

/** The JSON header bytes and data section length of a whole safetensors file. */
function splitSafetensors(file: Uint8Array): { header: Uint8Array; dataLength: number } {
  const length = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return { header: file.subarray(8, 8 + length), dataLength: file.length - 8 - length };
}

/** A whole file: the length prefix, `headerJson` padded to 8 bytes, and `data`. */
function assembleSafetensors(headerJson: string, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(headerJson);
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + data.length).fill(0x20, 8, 8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.set(data, 8 + padded);
  return out;
}

const dataLengths = fc.oneof(
  fc.nat({ max: 4096 }),
  fc.constantFrom(0, 8, 45, 2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER),
);

/** A header entry close to valid: right field names, values from the edges. */
const nearTensorEntry = fc.record(
  {
    dtype: fc.oneof(
      fc.constantFrom(...(Object.keys(SAFETENSORS_DTYPES) as SafetensorsDType[])),
      edgeJsonValue,
    ),
    shape: fc.oneof(
      fc.array(fc.oneof(fc.nat({ max: 8 }), edgeJsonValue), { maxLength: 4 }),
      edgeJsonValue,
    ),
    data_offsets: fc.oneof(
      fc.tuple(fc.nat({ max: 64 }), fc.nat({ max: 64 })),
      fc.array(fc.oneof(fc.nat({ max: 64 }), edgeJsonValue), { maxLength: 3 }),
      edgeJsonValue,
    ),
  },
  { requiredKeys: [] },
);

/** parseSafetensorsHeader on raw bytes, JSON values, near-valid headers and mutated valid ones. */
export function safetensorsHeaderProperty(): fc.IPropertyWithHooks<
  [{ bytes: Uint8Array; dataLength: number }]
> {
  const sample = sampleSafetensors();
  const { header: sampleHeader, dataLength: sampleDataLength } = splitSafetensors(sample);
  const headers = fc.oneof(
    fc.record({ bytes: fc.uint8Array({ maxLength: 256 }), dataLength: dataLengths }),
    fc.record({
      bytes: fc.jsonValue().map((value) => new TextEncoder().encode(JSON.stringify(value))),
      dataLength: dataLengths,
    }),
    fc.record({
      bytes: fc
        .tuple(
          fc.dictionary(fc.string({ maxLength: 6 }), nearTensorEntry, { maxKeys: 4 }),
          fc.option(fc.dictionary(fc.string({ maxLength: 4 }), edgeJsonValue, { maxKeys: 2 })),
        )
        .map(([tensors, metadata]) => {
          const header: Record<string, unknown> = { ...tensors };
          if (metadata !== null) header.__metadata__ = metadata;
          return new TextEncoder().encode(JSON.stringify(header));
        }),
      dataLength: fc.oneof(fc.nat({ max: 128 }), dataLengths),
    }),
    fc.record({
      bytes: byteMutations(sampleHeader.length).map((m) => applyByteMutations(sampleHeader, m)),
      dataLength: fc.oneof(fc.constant(sampleDataLength), dataLengths),
    }),
    fc.record({
      bytes: jsonMutations().map((m) =>
        new TextEncoder().encode(
          JSON.stringify(applyJsonMutations(JSON.parse(new TextDecoder().decode(sampleHeader)), m)),
        ),
      ),
      dataLength: fc.constant(sampleDataLength),
    }),
  );
  return fc.property(headers, ({ bytes, dataLength }) => {
    const outcome = typedOutcome(() =>
      parseSafetensorsHeader(bytes, dataLength, { file: FILE_LABEL }),
    );
    if (outcome.ok) assertConsistentHeader(outcome.value, dataLength);
    else assertNamesFile(outcome.error, FILE_LABEL);
  });
}

// ---------------------------------------------------------------------------------------------

const INFO: CaptureInfo = { ...SAMPLE_CAPTURE_INFO, model: 'fuzz.py:build', device: 'cpu' };

/** Records of every stored kind, small enough that a mutation often lands on structure. */
export function sampleRecords(): CapturedRecord[] {
  return [
    record('model.embed#1/', 0, 'bfloat16', [2, 3], [1, -3, 3.140625, 2 ** -133, -0, 0.5], {
      source: { file: '/src/model.py', line: 12 },
    }),
    record('model.layers.0.attn#1/0', 1, 'float16', [5], [1, -2, 65504, 2 ** -24, 0.25]),
    record('model.layers.0.attn#1/1', 2, 'float32', [2, 2], [0.1, -0.2, 1e30, -1e-30]),
    record('model.layers.0.mlp#1/', 3, 'float64', [3], [Math.PI, -Math.E, 1e-300]),
    record('model.ids#1/', 4, 'int64', [3], [-(2 ** 53), 0, 2 ** 40]),
    record('model.mask#1/', 5, 'bool', [4], [1, 0, 0, 1]),
    record('model.empty#1/', 6, 'float32', [0, 16], []),
    record('model.layers.0.qkv#2/', 7, 'bfloat16', [2], [2, -4], { rank: 1 }),
  ];
}

/** parseManifest on arbitrary text, JSON values, and byte- and JSON-level mutations of a valid one. */
export function manifestProperty(): fc.IPropertyWithHooks<[string]> {
  const records = sampleRecords();
  const manifest = {
    format: 'ekka-dump',
    version: 1,
    framework: INFO.framework,
    model: INFO.model,
    records: records.map((r, i) => ({
      name: r.name,
      seq: r.seq,
      kind: 'module-output',
      module: r.module,
      class: r.className,
      call: r.call,
      output: r.output,
      ...(r.rank !== undefined ? { rank: r.rank } : {}),
      dtype: r.dtype,
      shape: r.shape,
      file: `tensors-0000${i % 2}.safetensors`,
      key: r.name,
      ...(r.source ? { source: r.source } : {}),
    })),
  };
  const text = JSON.stringify(manifest);
  const bytes = new TextEncoder().encode(text);
  const texts = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.jsonValue().map((value) => JSON.stringify(value)),
    byteMutations(bytes.length).map((m) => new TextDecoder().decode(applyByteMutations(bytes, m))),
    jsonMutations().map((m) => JSON.stringify(applyJsonMutations(manifest, m))),
  );
  return fc.property(texts, (candidate) => {
    const outcome = typedOutcome(() => parseManifest(candidate, MANIFEST_FILE));
    if (!outcome.ok) return assertNamesFile(outcome.error, MANIFEST_FILE);
    const names = outcome.value.records.map((r) => r.name);
    assert.equal(new Set(names).size, names.length, 'accepted duplicate record names');
  });
}

// ---------------------------------------------------------------------------------------------

/** A valid dump written once; each case copies it and breaks one file. */
export interface DumpFixture {
  root: string;
  dir: string;
  /** File name → bytes, manifest included. */
  files: Map<string, Uint8Array>;
  cleanup(): Promise<void>;
}

export async function prepareDumpFixture(): Promise<DumpFixture> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-fuzz-dump-'));
  const dir = path.join(root, 'valid');
  // Small files, so the dump has several and records share some.
  await writeDump(dir, INFO, sampleRecords(), { maxFileBytes: 48, input: 'input.json' });
  const files = new Map<string, Uint8Array>();
  for (const name of (await fs.readdir(dir)).sort()) {
    files.set(name, new Uint8Array(await fs.readFile(path.join(dir, name))));
  }
  return { root, dir, files, cleanup: () => fs.rm(root, { recursive: true, force: true }) };
}

/** How one case breaks the dump. */
export type DumpDamage =
  | { kind: 'bytes'; file: number; mutations: ByteMutation[] }
  | { kind: 'manifest-json'; mutations: JsonMutation[] }
  | { kind: 'header-json'; file: number; mutations: JsonMutation[] }
  | { kind: 'filesystem'; file: number; what: 'missing' | 'folder' | 'symlink-out' | 'empty' };

export function dumpDamage(fixture: DumpFixture): fc.Arbitrary<DumpDamage> {
  const names = [...fixture.files.keys()];
  const manifestIndex = names.indexOf(MANIFEST_FILE);
  const tensorIndices = names.map((_, i) => i).filter((i) => i !== manifestIndex);
  const longest = Math.max(...[...fixture.files.values()].map((bytes) => bytes.length));
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('bytes' as const),
        file: fc.nat(names.length - 1),
        // Headers sit in each file's first bytes.
        mutations: byteMutations(longest, [[0, 160]]),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('manifest-json' as const),
        mutations: jsonMutations(),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('header-json' as const),
        file: fc.constantFrom(...tensorIndices),
        mutations: jsonMutations(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('filesystem' as const),
        file: fc.nat(names.length - 1),
        what: fc.constantFrom(
          'missing' as const,
          'folder' as const,
          'symlink-out' as const,
          'empty' as const,
        ),
      }),
    },
  );
}

export async function writeDamagedDump(
  fixture: DumpFixture,
  dir: string,
  damage: DumpDamage,
): Promise<void> {
  await fs.mkdir(dir);
  const names = [...fixture.files.keys()];
  const damaged = damage.kind === 'manifest-json' ? MANIFEST_FILE : names[damage.file]!;
  for (const [name, bytes] of fixture.files) {
    const file = path.join(dir, name);
    if (name !== damaged) {
      await fs.writeFile(file, bytes);
      continue;
    }
    switch (damage.kind) {
      case 'bytes':
        await fs.writeFile(file, applyByteMutations(bytes, damage.mutations));
        break;
      case 'manifest-json': {
        const manifest = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
        const mutated = applyJsonMutations(manifest, damage.mutations);
        const isManifestLike =
          typeof mutated === 'object' &&
          mutated !== null &&
          Array.isArray((mutated as { records?: unknown }).records);
        // The writer's layout when it still applies, else plain JSON.
        await fs.writeFile(
          file,
          isManifestLike
            ? formatManifest(mutated as Parameters<typeof formatManifest>[0])
            : JSON.stringify(mutated),
        );
        break;
      }
      case 'header-json': {
        const { header, dataLength } = splitSafetensors(bytes);
        const json = JSON.parse(new TextDecoder().decode(header)) as unknown;
        const mutated = JSON.stringify(applyJsonMutations(json, damage.mutations)) ?? 'null';
        await fs.writeFile(
          file,
          assembleSafetensors(mutated, bytes.subarray(bytes.length - dataLength)),
        );
        break;
      }
      case 'filesystem':
        if (damage.what === 'folder') await fs.mkdir(file);
        else if (damage.what === 'symlink-out')
          await fs.symlink(path.join(fixture.dir, name), file);
        else if (damage.what === 'empty') await fs.writeFile(file, '');
        break;
    }
  }
}

/**
 * openDump on a copy of a valid dump with one file damaged; when it opens, every record is read.
 * Only EkkaErrors, and what is read matches the manifest.
 */
export function openDumpProperty(fixture: DumpFixture): fc.IAsyncPropertyWithHooks<[DumpDamage]> {
  let counter = 0;
  return fc.asyncProperty(dumpDamage(fixture), async (damage) => {
    const dir = path.join(fixture.root, `case-${counter++}`);
    try {
      await writeDamagedDump(fixture, dir, damage);
      const outcome = await typedOutcomeAsync(async () => {
        const dump = await openDump(dir, { maxOpenFiles: 2 });
        const read: CapturedRecord[] = [];
        for await (const captured of dump.records()) read.push(captured);
        return { dump, read };
      });
      if (!outcome.ok) return;
      const { dump, read } = outcome.value;
      assert.equal(read.length, dump.entries.length);
      read.forEach((captured, i) => {
        const expected = dump.entries[i]!;
        assert.equal(captured.name, expected.name);
        assert.deepEqual(captured.shape, expected.shape);
        const count = captured.shape.reduce((product, dim) => product * dim, 1);
        assert.equal(captured.data.length, count, `${captured.name}: value count`);
      });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
}
