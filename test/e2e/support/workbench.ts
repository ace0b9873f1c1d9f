// Drives the VS Code workbench that code-server serves, with playwright-core and the system's
// Chromium. Every wait is bounded and fails with a message that says what was awaited.
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import {
  chromium,
  type Browser,
  type FrameLocator,
  type Locator,
  type Page,
} from 'playwright-core';
import { ARTIFACTS_DIR, log } from './codeServer';

/** Debian's Chromium; CHROMIUM_PATH overrides it. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-dev-shm-usage',
];
const WORKBENCH_TIMEOUT_MS = 90_000;

let browser: Browser | undefined;

/** The shared browser, launched on first use. */
export async function launchBrowser(): Promise<Browser> {
  if (browser?.isConnected()) return browser;
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: install it (Debian: apt-get install chromium) or set CHROMIUM_PATH`,
    );
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
  return browser;
}

/** Closes the shared browser (and every page opened by openWorkbench). */
export async function closeBrowser(): Promise<void> {
  const open = browser;
  browser = undefined;
  await open?.close();
}

/** Runs `wait`; on timeout, throws `message` (plus the cause's first line) instead. */
async function bounded<T>(what: string, wait: Promise<T>): Promise<T> {
  try {
    return await wait;
  } catch (error) {
    const cause = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new Error(`${what} (${cause})`);
  }
}

/**
 * Opens the workbench at `url` in a fresh browser context and resolves once the workbench is
 * laid out and its status bar is shown. Close the page's context (or the browser) when done.
 */
export async function openWorkbench(
  url: string,
  options: { timeoutMs?: number; viewport?: { width: number; height: number } } = {},
): Promise<Page> {
  const timeout = options.timeoutMs ?? WORKBENCH_TIMEOUT_MS;
  const started = Date.now();
  const context = await (
    await launchBrowser()
  ).newContext({
    viewport: options.viewport ?? { width: 1400, height: 900 },
  });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  await bounded(
    `the workbench page ${url} did not load within ${timeout / 1000} s`,
    page.goto(url, { waitUntil: 'domcontentloaded', timeout }),
  );
  await bounded(
    `no .monaco-workbench within ${timeout / 1000} s at ${url}`,
    page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout }),
  );
  await bounded(
    `the workbench status bar did not appear within ${timeout / 1000} s`,
    page.locator('.part.statusbar').waitFor({ state: 'visible', timeout }),
  );
  log(`workbench ready after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return page;
}

const quickInput = (page: Page): Locator => page.locator('.quick-input-widget');
const quickInputBox = (page: Page): Locator =>
  page.locator('.quick-input-widget .quick-input-box input');
const quickPickRows = (page: Page): Locator =>
  page.locator('.quick-input-widget .quick-input-list .monaco-list-row');

function exactly(text: string): RegExp {
  return new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`);
}

/** The command palette's row whose label is exactly `title` ("Category: Title"). */
function paletteRow(page: Page, title: string): Locator {
  return quickPickRows(page).filter({
    has: page.locator('.label-name', { hasText: exactly(title) }),
  });
}

async function visibleRowLabels(page: Page): Promise<string[]> {
  const labels = await quickPickRows(page).locator('.label-name').allTextContents();
  return labels.map((label) => label.trim());
}

/** Opens the command palette (F1) filtered by `>title`; resolves once the input shows it. */
async function openPalette(page: Page, title: string): Promise<void> {
  await page.keyboard.press('Escape');
  await page.keyboard.press('F1');
  await bounded(
    'the command palette did not open within 10 s after F1',
    quickInputBox(page).waitFor({ state: 'visible', timeout: 10_000 }),
  );
  await quickInputBox(page).fill(`>${title}`);
}

async function closePalette(page: Page): Promise<void> {
  if (await quickInput(page).isVisible()) await page.keyboard.press('Escape');
}

/** Moves the quick pick's focus (arrow keys) onto the row labelled exactly `title`. */
async function focusRow(page: Page, title: string): Promise<void> {
  const focusedLabel = quickPickRows(page).and(page.locator('.focused')).locator('.label-name');
  for (let step = 0; step < 20; step++) {
    const label = await focusedLabel
      .first()
      .textContent({ timeout: 2000 })
      .catch(() => null);
    if (label !== null && exactly(title).test(label)) return;
    await page.keyboard.press('ArrowDown');
  }
  throw new Error(`could not move the palette's focus onto "${title}"`);
}

/**
 * After Enter: waits until the palette is gone or shows something else (the command may open a
 * quick input of its own in the same widget).
 */
async function waitForPaletteToLeave(page: Page, value: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const box = quickInputBox(page);
    if (!(await box.isVisible())) return;
    const current = await box.inputValue({ timeout: 1000 }).catch(() => '');
    if (current !== value) return;
    if (Date.now() > deadline) {
      throw new Error(`the command palette still shows "${value}" 10 s after Enter`);
    }
    await page.waitForTimeout(100);
  }
}

/**
 * Opens the command palette, looks for `title`, and returns whether it is listed. Retries once
 * after `timeoutMs`: the first palette right after load may not know the extensions' commands yet.
 */
export async function paletteHasCommand(
  page: Page,
  title: string,
  timeoutMs = 15_000,
): Promise<boolean> {
  for (let attempt = 1; attempt <= 2; attempt++) {
    await openPalette(page, title);
    try {
      await paletteRow(page, title).first().waitFor({ state: 'visible', timeout: timeoutMs });
      return true;
    } catch {
      await closePalette(page);
      await page.waitForTimeout(1000);
    }
  }
  return false;
}

/**
 * Runs a command by its palette title ("Ekka: Run Diagnosis"): F1, `>title`, waits for the
 * matching row, Enter on it. Retries once when the first palette lacks it.
 */
export async function runCommand(page: Page, title: string, timeoutMs = 15_000): Promise<void> {
  let seen: string[] = [];
  for (let attempt = 1; attempt <= 2; attempt++) {
    await openPalette(page, title);
    const row = paletteRow(page, title).first();
    try {
      await row.waitFor({ state: 'visible', timeout: timeoutMs });
    } catch {
      seen = await visibleRowLabels(page);
      await closePalette(page);
      await page.waitForTimeout(1000);
      continue;
    }
    // The exact row may not be the first (the filter also ranks similar commands): focus it with
    // the arrow keys, then Enter.
    await focusRow(page, title);
    await page.keyboard.press('Enter');
    await waitForPaletteToLeave(page, `>${title}`);
    return;
  }
  throw new Error(
    `"${title}" is not in the command palette (tried twice, ${timeoutMs / 1000} s each); ` +
      `rows seen: ${seen.length ? seen.map((label) => JSON.stringify(label)).join(', ') : 'none'}`,
  );
}

/**
 * The content of a webview: the outer `iframe.webview.ready` and its inner `iframe#active-frame`.
 * `index` picks among several open webviews (in document order).
 */
export function webviewFrame(page: Page, index = 0): FrameLocator {
  return page
    .locator('iframe.webview.ready')
    .nth(index)
    .contentFrame()
    .locator('iframe#active-frame')
    .contentFrame();
}

/**
 * Waits for a notification toast whose message matches `text`; returns the toast (its buttons
 * are `toast.getByRole('button', { name })`) and its message.
 */
export async function waitForNotification(
  page: Page,
  text: RegExp,
  timeoutMs = 30_000,
): Promise<{ toast: Locator; message: string }> {
  const toast = page
    .locator('.notifications-toasts .notification-toast')
    .filter({ has: page.locator('.notification-list-item-message', { hasText: text }) })
    .first();
  try {
    await toast.waitFor({ state: 'visible', timeout: timeoutMs });
  } catch {
    const shown = await page
      .locator('.notifications-toasts .notification-list-item-message')
      .allTextContents();
    throw new Error(
      `no notification matching ${String(text)} within ${timeoutMs / 1000} s; shown: ` +
        (shown.length ? shown.map((message) => JSON.stringify(message)).join(', ') : 'none'),
    );
  }
  const message = (await toast.locator('.notification-list-item-message').textContent()) ?? '';
  return { toast, message: message.trim() };
}

export interface ActiveEditorInfo {
  /** The active tab's label: the file's base name. */
  file: string;
  /** The path shown by the breadcrumbs, workspace-relative, '/'-separated (may be absent). */
  path?: string;
  /** 1-based line and column of the cursor, from the status bar's "Ln X, Col Y". */
  line: number;
  column: number;
}

/**
 * Reads the active editor's file (tab title and breadcrumbs) and cursor position (status bar
 * "Ln X, Col Y") from the workbench. Waits up to `timeoutMs` for an active text editor.
 */
export async function activeEditorInfo(page: Page, timeoutMs = 15_000): Promise<ActiveEditorInfo> {
  const tab = page.locator('.editor-group-container.active .tabs-container .tab.active').first();
  const position = page.locator('[id="status.editor.selection"]').first();
  await bounded(
    `no active editor tab within ${timeoutMs / 1000} s`,
    tab.waitFor({ state: 'visible', timeout: timeoutMs }),
  );
  await bounded(
    `no "Ln X, Col Y" status bar item within ${timeoutMs / 1000} s (is the active editor a text editor?)`,
    position.waitFor({ state: 'visible', timeout: timeoutMs }),
  );
  const file = ((await tab.locator('.label-name').first().textContent()) ?? '').trim();
  const crumbs = await page
    .locator('.editor-group-container.active .breadcrumbs-control .monaco-breadcrumb-item')
    .allTextContents();
  const names = crumbs.map((crumb) => crumb.trim()).filter(Boolean);
  // Breadcrumbs run folder/…/file then symbols; keep the part up to the file.
  const fileAt = names.lastIndexOf(file);
  const text = (await position.textContent()) ?? '';
  const match = /Ln (\d+), Col (\d+)/.exec(text);
  if (!match) throw new Error(`the status bar position item reads ${JSON.stringify(text)}`);
  return {
    file,
    path: fileAt >= 0 ? names.slice(0, fileAt + 1).join('/') : undefined,
    line: Number(match[1]),
    column: Number(match[2]),
  };
}

/** Saves a full-page PNG to test-artifacts/e2e/<name>.png and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await fs.mkdir(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name.replace(/[^\w.-]+/g, '-')}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: 30_000 });
  return file;
}
