/**
 * Faults in the writers: an annotations writer killed mid-write, annotation and report writes that
 * fail. (The bridge killed mid-run, and the Python helper crashing, hanging or writing garbage,
 * are covered in test/bridge/bridgeClient.test.ts and test/runners/pytorchRunner.test.ts.)
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs, watch } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAnnotations } from '../../native-bridge/annotations/annotationStore';
import { AnnotationStore } from '../../native-bridge/annotations/annotationStore';
import type { DiagnosisResult } from '../../native-bridge/diagnosis/result';
import { EkkaError } from '../../native-bridge/errors';
import { loadReportAssets, renderHtmlReport } from '../../native-bridge/report/htmlReport';
import { seededRandom } from '../support/numbers';
import { writerNote } from './annotationWriter';

const WRITER = path.resolve('test/reliability/annotationWriter.ts');
const CLI = path.resolve('bin/ekka.js');
const ROPE_CASE = path.resolve('samples/tiny-llama/cases/rope-interleaved/ekka.json');
/** The schema's largest note: with 24 kept, each write is about 2.4 MB. */
const NOTE_LENGTH = 99_000;

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; `limitBlocks` sets `ulimit -f` (512-byte blocks) first. */
function run(
  command: string,
  args: string[],
  options: { limitBlocks?: number; cwd?: string } = {},
): Promise<Finished> {
  const child =
    options.limitBlocks === undefined
      ? spawn(command, args, { cwd: options.cwd })
      : spawn(
          '/bin/sh',
          ['-c', `ulimit -f ${options.limitBlocks} && exec "$@"`, 'sh', command, ...args],
          { cwd: options.cwd },
        );
  return finished(child);
}

function finished(child: ChildProcess): Promise<Finished> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Temporary files the atomic writer leaves beside `file` (`.<name>.<pid>.<hex>.tmp`). */
async function tempFiles(file: string): Promise<string[]> {
  const prefix = `.${path.basename(file)}.`;
  const names = await fs.readdir(path.dirname(file)).catch(() => []);
  return names.filter((name) => name.startsWith(prefix) && name.endsWith('.tmp')).sort();
}

/** Resolves when a temporary file is created in `folder` (or the process ends). */
async function tempFileAppears(folder: string, exited: Promise<unknown>): Promise<void> {
  const watcher = watch(folder);
  try {
    await Promise.race([
      new Promise<void>((resolve) =>
        watcher.on('change', (_, name) => {
          if (String(name).endsWith('.tmp')) resolve();
        }),
      ),
      exited,
    ]);
  } finally {
    watcher.close();
  }
}

describe('faults: annotations killed mid-write', function () {
  this.timeout(180_000);
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-faults-'));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  it('SIGKILL 20 times, at random and inside writes, leaves a valid file with every completed write', async () => {
    const file = path.join(dir, '.ekka', 'annotations.json');
    const random = seededRandom(20_251_125);
    let midWrite = 0;
    let previous: string[] = [];
    for (let kill = 0; kill < 20; kill++) {
      const child = spawn(process.execPath, ['--import', 'tsx', WRITER, file, String(NOTE_LENGTH)]);
      const exited = finished(child);
      // Wait for the first completed write (startup is not what is being tested), then kill at a
      // moment anywhere in the following writes.
      const completed: string[] = [];
      let buffered = '';
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          buffered += chunk.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          completed.push(...lines);
          if (completed.length > 0) resolve();
        });
        void exited.then((end) => reject(new Error(`writer exited early: ${end.stderr}`)));
      });
      if (kill % 2 === 0) {
        await delay(Math.floor(random() * 120));
      } else {
        // Aim at the write itself: kill within a few milliseconds of its temporary file appearing.
        await tempFileAppears(path.dirname(file), exited);
        await delay(Math.floor(random() * 4));
      }
      child.kill('SIGKILL');
      const end = await exited;
      assert.equal(end.signal, 'SIGKILL', `the writer ended on its own: ${end.stderr}`);

      const text = await fs.readFile(file, 'utf8');
      const contents = parseAnnotations(text, file);
      for (const annotation of contents.annotations) {
        const index = Number(annotation.note.split(':')[0]);
        assert.equal(annotation.note, writerNote(index, NOTE_LENGTH), 'a note was cut short');
      }
      // Every write reported complete is on disk (the writer removes only the oldest).
      const ids = new Set(contents.annotations.map((a) => a.id));
      assert.ok(ids.has(completed[completed.length - 1]!), 'the last completed write was lost');

      const temps = await tempFiles(file);
      const added = temps.filter((name) => !previous.includes(name));
      assert.ok(added.length <= 1, `more than one temporary file left: ${added.join(', ')}`);
      for (const name of added)
        assert.ok(name.includes(`.${child.pid}.`), `${name} is not the killed writer's`);
      midWrite += added.length;
      previous = temps;
    }
    // Kills inside a write are the ones that matter; each leaves its temporary file behind until
    // the next write, which removes the files of writers no longer running.
    assert.ok(midWrite >= 1, 'no kill landed inside a write');
    // What is left is still a store that works, and it cleans up after the dead writers.
    const store = new AnnotationStore(file);
    const before = (await store.list()).length;
    await store.add({ module: 'model', location: 'model', cause: 'model/rope', note: 'after' });
    assert.equal((await store.list()).length, before + 1);
    assert.deepEqual(await tempFiles(file), [], 'dead writers’ temporary files removed');
  });
});

describe('faults: writes that fail', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-faults-'));
  });
  afterEach(async () => {
    await fs.chmod(path.join(dir, '.ekka'), 0o755).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  });

  const suspect = {
    module: 'model.layers.2.self_attn',
    location: 'model' as const,
    cause: 'model/rope',
    note: 'GPT-J pairing',
  };

  /** A store with one annotation on disk, and that file's bytes. */
  async function storeWithOne(): Promise<{ file: string; bytes: Buffer }> {
    const file = path.join(dir, '.ekka', 'annotations.json');
    await new AnnotationStore(file).add(suspect);
    return { file, bytes: await fs.readFile(file) };
  }

  it('a write cut off by a full disk (file size limit) fails clearly and keeps the previous file', async () => {
    const { file, bytes } = await storeWithOne();
    // 64 blocks of 512 bytes: the existing file fits, the new one with a 99 000-character note not.
    const end = await run(
      process.execPath,
      ['--import', 'tsx', WRITER, file, String(NOTE_LENGTH), 'once'],
      { limitBlocks: 64 },
    );
    const outcome = JSON.parse(end.stdout) as { ok: boolean; code?: string; message: string };
    assert.equal(outcome.ok, false, 'the write should have failed');
    assert.match(outcome.message, /EFBIG|file too large/);
    assert.deepEqual(await fs.readFile(file), bytes, 'the previous file changed');
    assert.deepEqual(await tempFiles(file), [], 'a temporary file was left');
  });

  it('a read-only .ekka folder fails clearly and keeps the previous file', async function () {
    if (process.getuid?.() === 0) this.skip(); // root writes through a read-only mode
    const { file, bytes } = await storeWithOne();
    await fs.chmod(path.dirname(file), 0o555);
    await assert.rejects(new AnnotationStore(file).add(suspect), (error: Error) => {
      assert.match(error.message, /EACCES|permission denied/);
      return true;
    });
    assert.deepEqual(await fs.readFile(file), bytes);
    assert.deepEqual(await tempFiles(file), []);
  });

  it('.ekka being a file is an EkkaError naming the annotations file, and the file is kept', async () => {
    const blocker = path.join(dir, '.ekka');
    await fs.writeFile(blocker, 'not a folder\n');
    const file = path.join(blocker, 'annotations.json');
    const store = new AnnotationStore(file);
    for (const attempt of [() => store.add(suspect), () => store.list()]) {
      await assert.rejects(attempt(), (error: unknown) => {
        assert.ok(error instanceof EkkaError, String(error));
        assert.equal(error.kind, 'annotations');
        assert.equal(error.file, file);
        assert.match(error.message, /ENOTDIR|not a directory/);
        return true;
      });
    }
    assert.equal(await fs.readFile(blocker, 'utf8'), 'not a folder\n');
  });
});

describe('faults: the HTML report cannot be written', function () {
  this.timeout(120_000);
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-faults-'));
    await fs.writeFile(path.join(dir, 'a-file'), 'in the way\n');
    await fs.mkdir(path.join(dir, 'a-folder'));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  /** The CLI on the sample case with `--html out` (and `--json`); exit status and messages. */
  function diagnoseWithHtml(out: string, json: string, limitBlocks?: number): Promise<Finished> {
    return run(
      process.execPath,
      [CLI, 'diagnose', ROPE_CASE, '--json', json, '--html', out],
      limitBlocks === undefined ? { cwd: dir } : { cwd: dir, limitBlocks },
    );
  }

  const cases = [
    { what: 'a folder that is a file', out: 'a-file/report.html', reason: /ENOTDIR|EEXIST/ },
    { what: 'an existing folder', out: 'a-folder', reason: /EISDIR/ },
  ];
  for (const { what, out, reason } of cases) {
    it(`--html into ${what}: one message naming the path, exit 2`, async () => {
      const json = path.join(dir, `${path.basename(out)}.json`);
      const end = await diagnoseWithHtml(out, json);
      assert.equal(end.code, 2, end.stderr);
      const lines = end.stderr.trim().split('\n');
      assert.equal(lines.length, 1, end.stderr);
      assert.match(lines[0]!, new RegExp(`^ekka: ${out}: cannot write the HTML report: `));
      assert.match(lines[0]!, reason);
      assert.doesNotMatch(end.stderr, /internal error|\n\s+at /);
      // The diagnosis itself ran and its JSON result was written before the report failed.
      const result = JSON.parse(await fs.readFile(json, 'utf8')) as DiagnosisResult;
      assert.equal(result.suspects[0]?.module, 'model.layers.2.self_attn');
    });
  }

  it('--html cut off by a full disk (file size limit): clear message, exit 2', async () => {
    const json = path.join(dir, 'limited.json');
    // 1 MiB allows the JSON result (about 60 KB), not the report (plotly inlined, about 1.4 MB).
    const end = await diagnoseWithHtml('limited.html', json, 2048);
    assert.equal(end.code, 2, end.stderr);
    assert.match(
      end.stderr,
      /^ekka: limited\.html: cannot write the HTML report: .*(EFBIG|file too large)/,
    );
  });

  it('renderHtmlReport renders the same result into a whole page (the failure is the write)', async () => {
    const json = path.join(dir, 'render.json');
    const end = await run(process.execPath, [CLI, 'diagnose', ROPE_CASE, '--json', json]);
    assert.equal(end.code, 0, end.stderr);
    const result = JSON.parse(await fs.readFile(json, 'utf8')) as DiagnosisResult;
    const html = renderHtmlReport(result, [], await loadReportAssets());
    assert.match(html, /^<!doctype html>/i);
    assert.match(html.trimEnd(), /<\/html>$/);
  });
});
