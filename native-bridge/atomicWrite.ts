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
  await removeStaleTemps(file);
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

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (cause) {
    // EPERM: it exists but belongs to someone else.
    return (cause as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files of earlier writes to `file` whose writer died before its rename
 * (killed, or the machine went down): `.name.<pid>.<hex>.tmp` with a pid no longer running.
 */
async function removeStaleTemps(file: string): Promise<void> {
  const prefix = `.${path.basename(file)}.`;
  let names: string[];
  try {
    names = await fs.readdir(path.dirname(file));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const pid = Number(name.slice(prefix.length).split('.')[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !isAlive(pid)) {
      await fs.rm(path.join(path.dirname(file), name), { force: true });
    }
  }
}
