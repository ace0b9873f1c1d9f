// `npm run bench:latency [-- --runs N] [-- --docs]`: how long the Divergence chart takes to show
// its first point, in a real VS Code (code-server) with the packaged extension. Each run starts
// with the panel closed (the first run of a session: the panel opens, loads plotly and its script,
// then the diagnosis starts), and the figure is the panel's own measurement: from the bridge's
// comparison of the first module to that point drawn. Prints a table; --docs writes it into
// docs/performance.md. A benchmark, not a test: its figures depend on the machine's load.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { Page } from 'playwright-core';
import { median } from '../../native-bridge/localize/changePoint';
import { REPO_ROOT } from './support/codeServer';
import { pickQuickItem } from './support/quickInput';
import { openSampleSession } from './support/session';
import { runCommand, screenshot, webviewFrame } from './support/workbench';

const CASE = 'cases/rope-interleaved/ekka.json';
const TARGET_MS = 1000;
const BEGIN = '<!-- bench:latency -->';
const END = '<!-- /bench:latency -->';

interface Measured {
  run: number;
  /** Comparison of the first module → its point on the chart. */
  firstDelayMs: number;
  /** The run's largest comparison → point delay. */
  maxDelayMs: number;
  /** Command → first point drawn (includes opening the panel and starting the runs). */
  commandToFirstPointMs: number;
}

async function oneRun(page: Page, run: number): Promise<Measured> {
  // Closed panel: every run is a first run.
  await runCommand(page, 'View: Close All Editors');
  const started = Date.now();
  await runCommand(page, 'Ekka: Run Diagnosis');
  await pickQuickItem(page, CASE);
  const panel = webviewFrame(page);
  await panel
    .locator('#divergence[data-change-point="40"]')
    .waitFor({ state: 'attached', timeout: 120_000 });
  const chart = panel.locator('#divergence');
  const attribute = async (name: string) => Number(await chart.getAttribute(name));
  return {
    run,
    firstDelayMs: await attribute('data-first-delay-ms'),
    maxDelayMs: await attribute('data-max-delay-ms'),
    commandToFirstPointMs: (await attribute('data-first-point-at')) - started,
  };
}

function markdown(rows: Measured[], when: string): string {
  const first = median(rows.map((r) => r.firstDelayMs));
  const lines = [
    '<!-- Written by `npm run bench:latency -- --docs` (test/e2e/firstPointBench.ts). -->',
    '',
    `First point on the chart, each run with the panel closed before it (${rows.length} runs, ${when}):`,
    '',
    '| run | comparison → first point | largest comparison → point | command → first point |',
    '| --- | ------------------------ | -------------------------- | --------------------- |',
    ...rows.map(
      (r) =>
        `| ${r.run} | ${r.firstDelayMs} ms | ${r.maxDelayMs} ms | ${(r.commandToFirstPointMs / 1000).toFixed(2)} s |`,
    ),
    '',
    `Median comparison → first point: ${first} ms (target ≤ ${TARGET_MS} ms: ${first <= TARGET_MS ? 'met' : 'not met'}).`,
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { runs: { type: 'string', default: '3' }, docs: { type: 'boolean', default: false } },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer`);
  const session = await openSampleSession({ logName: 'bench-latency' });
  const rows: Measured[] = [];
  try {
    for (let run = 1; run <= runs; run++) {
      const measured = await oneRun(session.page, run);
      rows.push(measured);
      console.log(
        `run ${run}: comparison → first point ${measured.firstDelayMs} ms, largest ${measured.maxDelayMs} ms, command → first point ${measured.commandToFirstPointMs} ms`,
      );
    }
    // The panel as it reads after a run: wide (1400 × 900 window) and narrow (the panel at
    // about 450 px beside the source).
    await screenshot(session.page, 'panel-wide');
    await session.page.setViewportSize({ width: 960, height: 900 });
    await webviewFrame(session.page).locator('#suspects').waitFor({ state: 'attached' });
    await session.page.waitForTimeout(1000); // plotly's responsive relayout runs on resize
    await screenshot(session.page, 'panel-narrow');
  } finally {
    await session.close();
  }
  const when = `${new Date().toISOString().slice(0, 10)}, ${process.platform}, Node ${process.version}`;
  const table = markdown(rows, when);
  console.log(`\n${table}`);
  await fs.mkdir(path.join(REPO_ROOT, 'bench-results'), { recursive: true });
  await fs.writeFile(
    path.join(REPO_ROOT, 'bench-results', 'latency.json'),
    `${JSON.stringify({ when, targetMs: TARGET_MS, rows }, null, 2)}\n`,
  );
  if (values.docs) {
    const doc = path.join(REPO_ROOT, 'docs', 'performance.md');
    const text = await fs.readFile(doc, 'utf8');
    const start = text.indexOf(BEGIN);
    const end = text.indexOf(END);
    if (start < 0 || end < start) throw new Error(`docs/performance.md has no ${BEGIN} block`);
    await fs.writeFile(
      doc,
      `${text.slice(0, start + BEGIN.length)}\n\n${table}\n\n${text.slice(end)}`,
    );
    console.log('Wrote docs/performance.md');
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
