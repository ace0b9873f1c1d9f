import type { Locator, Page } from 'playwright-core';

const widget = (page: Page): Locator => page.locator('.quick-input-widget');
const input = (page: Page): Locator => page.locator('.quick-input-widget .quick-input-box input');
const rows = (page: Page): Locator =>
  page.locator('.quick-input-widget .quick-input-list .monaco-list-row');

/**
 * In an open quick pick: types `filter`, then clicks the row whose label is exactly `label`.
 * Bounded waits, with the rows seen in the error.
 */
export async function pickQuickItem(
  page: Page,
  label: string,
  filter = label,
  timeoutMs = 20_000,
): Promise<void> {
  await input(page).waitFor({ state: 'visible', timeout: timeoutMs });
  await input(page).fill(filter);
  const row = rows(page).filter({
    has: page.locator('.label-name', { hasText: new RegExp(`^\\s*${escape(label)}\\s*$`) }),
  });
  try {
    await row.first().waitFor({ state: 'visible', timeout: timeoutMs });
  } catch {
    const seen = (await rows(page).locator('.label-name').allTextContents()).map((t) => t.trim());
    throw new Error(
      `no quick pick row "${label}" within ${timeoutMs / 1000} s; rows: ${seen.join(', ')}`,
    );
  }
  await row.first().click();
}

/** In an open input box: types `text` and presses Enter. */
export async function answerInputBox(page: Page, text: string, timeoutMs = 20_000): Promise<void> {
  await widget(page).waitFor({ state: 'visible', timeout: timeoutMs });
  await input(page).fill(text);
  await page.keyboard.press('Enter');
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
