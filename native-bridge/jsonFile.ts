import { promises as fs } from 'node:fs';
import { EkkaError, describeCause, type EkkaErrorKind } from './errors';

/** Reads and parses a JSON file; a missing file or bad JSON becomes an EkkaError naming it. */
export async function readJsonFile(file: string, kind: EkkaErrorKind): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new EkkaError(kind, missing ? 'file not found' : describeCause(cause), file);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new EkkaError(kind, `not valid JSON (${describeCause(cause)})`, file);
  }
}
