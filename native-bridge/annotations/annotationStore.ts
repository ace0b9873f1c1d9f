import Ajv from 'ajv';
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { writeFileAtomic } from '../atomicWrite';
import { EkkaError, describeCause } from '../errors';
import type { Annotation, AnnotationsFile } from './annotation';
import schema from './annotations.schema.json';

const ajv = new Ajv({ allErrors: true, strict: true });
const validateFile = ajv.compile<AnnotationsFile>(schema);

/** What a caller supplies for a new annotation; id and times are filled in. */
export type NewAnnotation = Omit<Annotation, 'id' | 'created' | 'updated'>;

function empty(): AnnotationsFile {
  return { format: 'ekka-annotations', version: 1, annotations: [] };
}

/**
 * Parses and validates an annotations file's text. Errors name the file and the first offending
 * record, so a hand-edited file that went wrong is pointed at, never silently replaced.
 */
export function parseAnnotations(text: string, file: string): AnnotationsFile {
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (cause) {
    throw new EkkaError('annotations', `not valid JSON (${describeCause(cause)})`, file);
  }
  if (!validateFile(value)) {
    const [first] = validateFile.errors ?? [];
    const where = first?.instancePath || '(top level)';
    throw new EkkaError('annotations', `${where}: ${first?.message ?? 'invalid'}`, file);
  }
  const seen = new Set<string>();
  for (const [index, annotation] of value.annotations.entries()) {
    if (seen.has(annotation.id)) {
      throw new EkkaError(
        'annotations',
        `/annotations/${index}: duplicate id "${annotation.id}"`,
        file,
      );
    }
    seen.add(annotation.id);
  }
  return value;
}

/**
 * The annotations of one workspace folder. Every change is a read-modify-write of the whole file,
 * written atomically and serialized within this process; a file that cannot be read as annotations
 * is never overwritten.
 */
export class AnnotationStore {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly file: string) {}

  async list(): Promise<Annotation[]> {
    return (await this.read()).annotations;
  }

  add(annotation: NewAnnotation): Promise<Annotation> {
    return this.change((contents) => {
      const created: Annotation = {
        id: randomUUID(),
        created: new Date().toISOString(),
        ...annotation,
      };
      contents.annotations.push(created);
      return created;
    });
  }

  update(id: string, changes: Partial<NewAnnotation>): Promise<Annotation> {
    return this.change((contents) => {
      const index = contents.annotations.findIndex((a) => a.id === id);
      if (index < 0) throw new EkkaError('annotations', `no annotation with id "${id}"`, this.file);
      const updated = {
        ...contents.annotations[index]!,
        ...changes,
        updated: new Date().toISOString(),
      };
      contents.annotations[index] = updated;
      return updated;
    });
  }

  remove(id: string): Promise<boolean> {
    return this.change((contents) => {
      const before = contents.annotations.length;
      contents.annotations = contents.annotations.filter((a) => a.id !== id);
      return contents.annotations.length < before;
    });
  }

  private async read(): Promise<AnnotationsFile> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return empty();
      throw new EkkaError('annotations', describeCause(cause), this.file);
    }
    return parseAnnotations(text, this.file);
  }

  private change<T>(edit: (contents: AnnotationsFile) => T): Promise<T> {
    const run = this.queue.then(async () => {
      const contents = await this.read();
      const result = edit(contents);
      const text = `${JSON.stringify(contents, null, 2)}\n`;
      parseAnnotations(text, this.file);
      try {
        await writeFileAtomic(this.file, text);
      } catch (cause) {
        throw new EkkaError(
          'annotations',
          `not saved (${describeCause(cause)}); the previous file is unchanged`,
          this.file,
        );
      }
      return result;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
}
