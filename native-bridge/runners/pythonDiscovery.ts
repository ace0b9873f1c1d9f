import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { EkkaError } from '../errors';

/** How a user names the interpreter for PyTorch runs, in the order they are read. */
export const PYTHON_CHOICES =
  'the run\'s "python" in ekka.json, the ekka.pythonInterpreter setting, --python on the command line, or EKKA_PYTHON';

/**
 * The interpreters tried when none is named: the virtual environment `npm run setup:python` makes
 * in this package (pinned torch and transformers), `python3` on the PATH, Debian's python3.
 */
export function pythonCandidates(packageRoot = findPackageRoot(__dirname)): string[] {
  const candidates: string[] = [];
  if (packageRoot) candidates.push(path.join(packageRoot, '.venv', 'bin', 'python'));
  candidates.push('python3', '/usr/bin/python3');
  return candidates;
}

/** The folder above `from` that holds this package's package.json (bundled or in the tree). */
function findPackageRoot(from: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'bin', 'ekka.js')))
      return dir;
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** Why `python` cannot run a capture, or undefined when it imports torch. */
export function torchProblem(python: string, timeoutMs = 120_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(
      python,
      ['-c', 'import torch'],
      { timeout: timeoutMs, windowsHide: true },
      (error, _stdout, stderr) => {
        if (!error) return resolve(undefined);
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return resolve('not found');
        const last = stderr.trim().split('\n').pop();
        resolve(last || error.message);
      },
    );
  });
}

const found = new Map<string, Promise<string>>();

/**
 * The interpreter for PyTorch runs that name none: the first candidate that imports torch
 * (looked up once per process). An error lists what was tried and how to choose one.
 */
export function discoverPython(candidates = pythonCandidates()): Promise<string> {
  const key = candidates.join('\0');
  let search = found.get(key);
  if (!search) {
    search = (async () => {
      const tried: string[] = [];
      for (const candidate of candidates) {
        const problem = await torchProblem(candidate);
        if (problem === undefined) return candidate;
        tried.push(`${candidate} (${problem})`);
      }
      throw new EkkaError(
        'input',
        `no Python interpreter with PyTorch found; tried ${tried.join(', ')}. Name one with ${PYTHON_CHOICES}, or run \`npm run setup:python\` to make this package's virtual environment`,
      );
    })();
    // A failed search is not cached: the user may install torch and run again.
    search.catch(() => found.delete(key));
    found.set(key, search);
  }
  return search;
}
