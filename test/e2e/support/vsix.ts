import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, log } from './codeServer';

const run = promisify(execFile);
/** Where `npm run package` writes the VSIX. */
export const VSIX = path.join(REPO_ROOT, 'build', 'ekka-vscode.vsix');

let packaged: Promise<string> | undefined;

/** Builds the VSIX with `npm run package`, once per test process. */
export function packageExtension(): Promise<string> {
  packaged ??= (async () => {
    const started = Date.now();
    await run('npm', ['run', 'package'], { cwd: REPO_ROOT, maxBuffer: 1 << 24 });
    if (!existsSync(VSIX) || statSync(VSIX).mtimeMs < started - 1000) {
      throw new Error(`\`npm run package\` did not write ${VSIX}`);
    }
    log(
      `VSIX built in ${((Date.now() - started) / 1000).toFixed(1)} s (${(statSync(VSIX).size / 2 ** 20).toFixed(1)} MB)`,
    );
    return VSIX;
  })();
  return packaged;
}
