import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import schema from '../../native-bridge/annotations/annotations.schema.json';
import { AnnotationStore } from '../../native-bridge/annotations/annotationStore';
import { ROOT_CAUSE_IDS } from '../../native-bridge/annotations/taxonomy';
import { EkkaError } from '../../native-bridge/errors';

describe('annotation store', () => {
  let dir: string;
  let file: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-annotations-'));
    file = path.join(dir, '.ekka', 'annotations.json');
  });
  afterEach(() => fs.rm(dir, { recursive: true, force: true }));

  const suspect = {
    module: 'model.layers.2.self_attn',
    op: 'MatMul',
    ratio: 2.78e4,
    source: { file: 'modeling_target.py', line: 18 },
    location: 'model' as const,
    cause: 'model/rope',
    note: 'GPT-J pairing instead of NeoX',
  };

  it('adds, updates and removes annotations, persisting each change', async () => {
    const store = new AnnotationStore(file);
    assert.deepEqual(await store.list(), []);
    const added = await store.add(suspect);
    const onDisk = JSON.parse(await fs.readFile(file, 'utf8')) as { annotations: unknown[] };
    assert.equal(onDisk.annotations.length, 1);
    assert.equal((await new AnnotationStore(file).list())[0]!.note, suspect.note);

    await store.update(added.id, { note: 'theta too' });
    const [updated] = await new AnnotationStore(file).list();
    assert.equal(updated!.note, 'theta too');
    assert.ok(updated!.updated);
    assert.equal(await store.remove(added.id), true);
    assert.deepEqual(await new AnnotationStore(file).list(), []);
  });

  it('serializes concurrent changes so none is lost', async () => {
    const store = new AnnotationStore(file);
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.add({ ...suspect, note: `n${i}` })),
    );
    assert.equal((await new AnnotationStore(file).list()).length, 20);
  });

  it('refuses to overwrite a file it cannot read, naming the file and record', async () => {
    await fs.mkdir(path.dirname(file), { recursive: true });
    const handEdited = '{"format":"ekka-annotations","version":1,"annotations":[{"id":"a"}]}';
    await fs.writeFile(file, handEdited);
    const store = new AnnotationStore(file);
    await assert.rejects(store.add(suspect), (error: EkkaError) => {
      assert.equal(error.kind, 'annotations');
      assert.match(error.message, /annotations\.json: \/annotations\/0: must have required/);
      return true;
    });
    assert.equal(await fs.readFile(file, 'utf8'), handEdited);
  });

  it('rejects an unknown cause id', async () => {
    await assert.rejects(
      new AnnotationStore(file).add({ ...suspect, cause: 'model/ropee' }),
      /cause/,
    );
  });

  it('leaves no temporary file behind', async () => {
    await new AnnotationStore(file).add(suspect);
    assert.deepEqual(await fs.readdir(path.dirname(file)), ['annotations.json']);
  });

  it('lists the same cause ids as the taxonomy', () => {
    const causes = schema.properties.annotations.items.properties.cause.enum;
    assert.deepEqual([...causes].sort(), [...ROOT_CAUSE_IDS].sort());
    assert.equal(ROOT_CAUSE_IDS.length, 18);
  });
});

describe('atomic writes after a crash', () => {
  it('removes the temporary file a dead writer left, keeping live writers’ files', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-stale-'));
    try {
      const file = path.join(dir, '.ekka', 'annotations.json');
      await fs.mkdir(path.dirname(file), { recursive: true });
      // A pid no process has (above the kernel's pid_max), and a live one (mocha's parent).
      const dead = path.join(path.dirname(file), '.annotations.json.99999999.abcd1234.tmp');
      const live = path.join(path.dirname(file), `.annotations.json.${process.ppid}.abcd1234.tmp`);
      await fs.writeFile(dead, 'half a write');
      await fs.writeFile(live, 'a write in progress');
      await new AnnotationStore(file).add({
        module: 'm',
        location: 'model',
        cause: 'other',
        note: '',
      });
      const names = (await fs.readdir(path.dirname(file))).sort();
      assert.deepEqual(names, [
        '.annotations.json.' + process.ppid + '.abcd1234.tmp',
        'annotations.json',
      ]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('reports a failed write as an annotations error naming the file, keeping the old one', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-full-'));
    try {
      const file = path.join(dir, 'annotations.json');
      const store = new AnnotationStore(file);
      await store.add({ module: 'm', location: 'model', cause: 'other', note: 'first' });
      const before = await fs.readFile(file, 'utf8');
      // A folder where the temporary file must go: the write cannot start.
      await fs.chmod(dir, 0o500);
      const root = process.getuid?.() === 0;
      if (root) {
        // chmod does not stop root; make the temp name a folder instead by filling the name space.
        await fs.chmod(dir, 0o700);
        const realWrite = fs.open;
        (fs as { open: typeof fs.open }).open = () =>
          Promise.reject(
            Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }),
          );
        try {
          await assert.rejects(
            store.add({ module: 'm', location: 'model', cause: 'other', note: 'second' }),
            (error: EkkaError) => {
              assert.equal(error.kind, 'annotations');
              assert.match(
                error.message,
                /annotations\.json: not saved \(ENOSPC: no space left on device\); the previous file is unchanged/,
              );
              return true;
            },
          );
        } finally {
          (fs as { open: typeof fs.open }).open = realWrite;
        }
      } else {
        await assert.rejects(
          store.add({ module: 'm', location: 'model', cause: 'other', note: 'second' }),
          /annotations\.json: not saved/,
        );
        await fs.chmod(dir, 0o700);
      }
      assert.equal(await fs.readFile(file, 'utf8'), before);
    } finally {
      await fs.chmod(dir, 0o700).catch(() => undefined);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
