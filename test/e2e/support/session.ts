// One workbench on a scratch copy of the tiny-llama sample, with the packaged extension installed.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import {
  REPO_ROOT,
  ensureCodeServer,
  startCodeServer,
  waitForExtensionActivation,
  type CodeServer,
  type StartOptions,
} from './codeServer';
import { packageExtension } from './vsix';
import { closeBrowser, openWorkbench } from './workbench';

export const EXTENSION_ID = 'ekka.ekka-vscode';
const ACTIVATION_TIMEOUT_MS = 90_000;

export interface SampleSessionOptions {
  /** Names the server's saved logs (test-artifacts/e2e/logs/<name>). */
  logName: string;
  /** Keep VS Code's workspace trust feature (see StartOptions.trust). */
  trust?: boolean;
  settings?: StartOptions['settings'];
  /** Changes the copied workspace before the server starts. */
  prepare?(workspace: string): Promise<void>;
  /** Wait for the extension to activate before resolving; default true. */
  activation?: boolean;
}

export interface SampleSession {
  /** The scratch copy of samples/tiny-llama that the workbench opens. */
  workspace: string;
  server: CodeServer;
  page: Page;
  /** Closes the browser, stops the server and removes the workspace. */
  close(): Promise<void>;
}

/**
 * Copies samples/tiny-llama into a scratch folder, starts code-server on it with the packaged
 * extension, opens the workbench and (unless `activation` is false) waits until the extension is
 * active. What was started is stopped again when a step fails.
 */
export async function openSampleSession(options: SampleSessionOptions): Promise<SampleSession> {
  await ensureCodeServer();
  const vsix = await packageExtension();
  const workspace = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-e2e-workspace-'));
  let server: CodeServer | undefined;
  const close = async (): Promise<void> => {
    await closeBrowser();
    await server?.stop();
    await fs.rm(workspace, { recursive: true, force: true });
  };
  try {
    await fs.cp(path.join(REPO_ROOT, 'samples/tiny-llama'), workspace, { recursive: true });
    await options.prepare?.(workspace);
    server = await startCodeServer({
      workspace,
      vsixFiles: [vsix],
      trust: options.trust,
      settings: options.settings,
      logName: options.logName,
    });
    const page = await openWorkbench(server.url);
    if (options.activation ?? true) {
      await waitForExtensionActivation(server, EXTENSION_ID, ACTIVATION_TIMEOUT_MS);
    }
    return { workspace, server, page, close };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}
