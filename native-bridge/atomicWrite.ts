import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/**
 * Writes `data` to `file` so that a reader sees either the old file or the whole new one: the bytes
 * go to a temporary file in the same folder, are flushed to disk, then renamed over `file`. A crash
 * or a failed write leaves the previous file intact.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const temp = path.join(
    path.dirname(file),
    `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  const handle = await fs.open(temp, 'wx', 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (cause) {
    await handle.close();
    await fs.rm(temp, { force: true });
    throw cause;
  }
  await handle.close();
  try {
    await fs.rename(temp, file);
  } catch (cause) {
    await fs.rm(temp, { force: true });
    throw cause;
  }
}
