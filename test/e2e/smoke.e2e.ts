// Smoke test: the packaged extension installs into a real VS Code (code-server), activates on the
// tiny-llama sample and contributes its command to the command palette.
import * as assert from 'node:assert/strict';
import { promises as fs, readFileSync } from 'node:fs';
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
import { packageExtension } from './support/vsix';
import { closeBrowser, openWorkbench, paletteHasCommand, screenshot } from './support/workbench';

const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
  name: string;
  publisher: string;
  version: string;
  scripts: Record<string, string>;
};
const EXTENSION_ID = `${manifest.publisher}.${manifest.name}`;
const COMMAND_TITLE = 'Ekka: Run Diagnosis';

describe('end-to-end smoke: the extension in code-server', () => {
  let scratch: string;
  let server: CodeServer | undefined;
  let page: Page | undefined;

  before(async function () {
    const started = Date.now();
    await ensureCodeServer();
    log(`code-server ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-e2e-vsix-'));
    const vsix = await packageExtension();
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
