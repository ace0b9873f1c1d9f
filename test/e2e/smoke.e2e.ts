// Smoke test: the packaged extension installs into a real VS Code (code-server), activates on the
// tiny-llama sample and contributes its command to the command palette.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, promises as fs, readFileSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import {
  REPO_ROOT,
  ensureCodeServer,
  log,
  startCodeServer,
  waitForExtensionActivation,
  type CodeServer,
} from './support/codeServer';
import { closeBrowser, openWorkbench, paletteHasCommand, screenshot } from './support/workbench';

const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
  name: string;
  publisher: string;
  version: string;
  scripts: Record<string, string>;
};
const EXTENSION_ID = `${manifest.publisher}.${manifest.name}`;
const COMMAND_TITLE = 'Ekka: Run Diagnosis';

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${output.slice(-4000)}`)),
    );
  });
}

/** The path a `vsce package` command line writes to: its -o/--out, else vsce's default name. */
function vsixOutput(script: string): string {
  const out = /(?:^|\s)(?:-o|--out)(?:\s+|=)(\S+)/.exec(script)?.[1];
  if (!out) return path.join(REPO_ROOT, `${manifest.name}-${manifest.version}.vsix`);
  const resolved = path.resolve(REPO_ROOT, out);
  return out.endsWith('/') || (existsSync(resolved) && statSync(resolved).isDirectory())
    ? path.join(resolved, `${manifest.name}-${manifest.version}.vsix`)
    : resolved;
}

/** Builds the VSIX with the project's `package` script when it has one, else with vsce here. */
async function buildVsix(dir: string): Promise<string> {
  const script = manifest.scripts.package;
  if (script) {
    const started = Date.now();
    await run('npm', ['run', 'package']);
    const vsix = vsixOutput(script);
    if (!existsSync(vsix) || statSync(vsix).mtimeMs < started - 1000) {
      throw new Error(`\`npm run package\` (${script}) did not write ${vsix}`);
    }
    return vsix;
  }
  await run('npm', ['run', 'build']);
  const vsix = path.join(dir, 'ekka.vsix');
  await run(path.join(REPO_ROOT, 'node_modules/.bin/vsce'), [
    'package',
    '--no-dependencies',
    '--allow-missing-repository',
    '--skip-license',
    // README links docs/*.md relatively; with no repository URL vsce refuses to rewrite them.
    '--no-rewrite-relative-links',
    '-o',
    vsix,
  ]);
  return vsix;
}

describe('end-to-end smoke: the extension in code-server', () => {
  let scratch: string;
  let server: CodeServer | undefined;
  let page: Page | undefined;

  before(async function () {
    const started = Date.now();
    await ensureCodeServer();
    log(`code-server ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-e2e-vsix-'));
    const packaged = Date.now();
    const vsix = await buildVsix(scratch);
    log(`VSIX built in ${((Date.now() - packaged) / 1000).toFixed(1)} s: ${vsix}`);
    server = await startCodeServer({
      workspace: path.join(REPO_ROOT, 'samples/tiny-llama'),
      vsixFiles: [vsix],
      logName: 'smoke',
    });
    page = await openWorkbench(server.url);
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && page) {
      await screenshot(page, `smoke-failed-${this.currentTest.title}`).catch(() => undefined);
    }
  });

  after(async function () {
    await closeBrowser();
    await server?.stop();
    if (scratch) await fs.rm(scratch, { recursive: true, force: true });
  });

  it('activates the extension on a workspace with an ekka.json', async () => {
    const started = Date.now();
    const hostLog = await waitForExtensionActivation(server!, EXTENSION_ID, 60_000);
    log(`${EXTENSION_ID} activated ${((Date.now() - started) / 1000).toFixed(1)} s after load`);
    assert.match(hostLog, /workspaceContains/i);
  });

  it(`lists "${COMMAND_TITLE}" in the command palette`, async () => {
    assert.ok(await paletteHasCommand(page!, COMMAND_TITLE), `"${COMMAND_TITLE}" not listed`);
    const file = await screenshot(page!, 'smoke-command-palette');
    log(`screenshot: ${path.relative(REPO_ROOT, file)}`);
    await page!.keyboard.press('Escape');
  });
});
