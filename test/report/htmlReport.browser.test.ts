import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { ReportPageData } from '../../native-bridge/report/htmlReport';
import { scratchDir } from '../support/tinyOnnx';

const ROOT = path.resolve('.');
const CHROMIUM = '/usr/bin/chromium';
const ROPE = path.join(ROOT, 'samples/tiny-llama/cases/rope-interleaved/ekka.json');

interface PageEvents {
  console: string[];
  errors: string[];
  requests: string[];
}

async function openReport(
  browser: Browser,
  file: string,
): Promise<{ page: Page; events: PageEvents }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const events: PageEvents = { console: [], errors: [], requests: [] };
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') {
      events.console.push(`${message.type()}: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => events.errors.push(error.message));
  page.on('request', (request) => events.requests.push(request.url()));
  // A policy violation is also an event on the document; record those from before any script.
  // Scripts go to the page as text: the test runner's transform adds helpers a page lacks.
  await page.addInitScript(`document.addEventListener('securitypolicyviolation', (event) => {
    console.error('CSP violation: ' + event.violatedDirective + ' ' + event.blockedURI);
  });`);
  await page.goto(pathToFileURL(file).href);
  await page.waitForSelector('#divergence-chart[data-rendered="true"]', { timeout: 30_000 });
  return { page, events };
}

describe('HTML report in a browser', function () {
  let browser: Browser | undefined;
  let report: string;
  let data: ReportPageData;

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      console.log(`    skipped: ${CHROMIUM} is absent (apt-get install -y chromium)`);
      this.skip();
    }
    if (!existsSync(path.join(ROOT, 'dist/cli.js'))) {
      throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)');
    }
    report = path.join(await scratchDir(), 'rope.html');
    const run = spawnSync(
      process.execPath,
      [path.join(ROOT, 'bin/ekka.js'), 'diagnose', ROPE, '--html', report],
      { cwd: ROOT, encoding: 'utf8' },
    );
    assert.equal(run.status, 0, run.stderr);
    const html = await fs.readFile(report, 'utf8');
    const json = /<script type="application\/json" id="ekka-report-data">([^<]*)<\/script>/.exec(
      html,
    );
    data = JSON.parse(json![1]!) as ReportPageData;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });

  after(async () => {
    await browser?.close();
  });

  it('draws one point per series entry, marks the change point, and stays quiet', async () => {
    const { page, events } = await openReport(browser!, report);
    const counts = await page.evaluate<{
      series: number;
      suspects: number;
      changePoint: number;
      dashedLines: number;
      annotations: string[];
    }>(`(() => {
      const points = (uid) =>
        document.querySelectorAll('.scatterlayer .trace' + uid + ' .points path.point').length;
      return {
        series: points('series'),
        suspects: points('suspects'),
        changePoint: points('change-point'),
        dashedLines: [...document.querySelectorAll('.shapelayer path')].filter((shape) =>
          (shape.getAttribute('style') || '').includes('stroke-dasharray'),
        ).length,
        annotations: [...document.querySelectorAll('.annotation-text')].map((a) => a.textContent),
      };
    })()`);
    assert.ok(data.result.series.length > 50);
    assert.equal(counts.series, data.result.series.length);
    assert.equal(counts.suspects, data.result.suspects.length);
    assert.equal(counts.changePoint, 1, 'change-point marker');
    assert.equal(counts.dashedLines, 1, 'change-point line');
    const cp = data.result.changePoint!;
    assert.ok(
      counts.annotations.includes(`change point #${cp.index}: ${cp.module}`),
      counts.annotations.join(' | '),
    );

    // Hovering the change point shows its module and metrics.
    const marker = page.locator('.scatterlayer .tracechange-point .points path.point');
    // Plotly's drag layer sits above the points and handles hover for them: move the mouse there.
    const box = (await marker.boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.waitForSelector('.hoverlayer .hovertext', { timeout: 5000 });
    const hover = await page.locator('.hoverlayer').textContent();
    assert.match(hover ?? '', /model\.layers\.2\.self_attn/);
    assert.match(hover ?? '', /rel\. L2 .* cosine/);

    assert.deepEqual(events.errors, []);
    assert.deepEqual(events.console, [], 'console errors, warnings or CSP violations');
    assert.deepEqual(events.requests, [pathToFileURL(report).href], 'only the file itself');
    await page.close();
  });
});
