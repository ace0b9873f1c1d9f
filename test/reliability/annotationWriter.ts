/**
 * Adds annotations with a large note in a loop, keeping the newest KEEP, and prints each added id
 * once its write is complete. Run by faults.test.ts, which kills it at random moments:
 *   node --import tsx test/reliability/annotationWriter.ts <annotations.json> <note length>
 * With a third argument `once`, adds one annotation and prints the outcome as JSON instead (for a
 * write that fails, e.g. under a file size limit).
 */
import {
  AnnotationStore,
  type NewAnnotation,
} from '../../native-bridge/annotations/annotationStore';

/** Enough annotations that every write is a few megabytes. */
const KEEP = 24;

/** The note of the annotation added `index`-th: its index, then filler, `length` characters. */
export function writerNote(index: number, length: number): string {
  return `${index}:`.padEnd(length, 'x');
}

function annotation(index: number, noteLength: number): NewAnnotation {
  return {
    module: `model.layers.${index}.self_attn`,
    location: 'model',
    cause: 'model/rope',
    note: writerNote(index, noteLength),
  };
}

async function main(): Promise<void> {
  const [file, noteLength] = process.argv.slice(2);
  if (!file || !noteLength) throw new Error('usage: annotationWriter.ts <file> <note length>');
  const store = new AnnotationStore(file);
  if (process.argv[4] === 'once') {
    const outcome = await store.add(annotation(0, Number(noteLength))).then(
      () => ({ ok: true }),
      (error: Error & { kind?: string; code?: string }) => ({
        ok: false,
        name: error.name,
        kind: error.kind,
        code: error.code,
        message: error.message,
      }),
    );
    process.stdout.write(`${JSON.stringify(outcome)}\n`);
    return;
  }
  for (let index = (await store.list()).length; ; index++) {
    const added = await store.add(annotation(index, Number(noteLength)));
    process.stdout.write(`${added.id}\n`);
    const annotations = await store.list();
    if (annotations.length > KEEP) await store.remove(annotations[0]!.id);
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
