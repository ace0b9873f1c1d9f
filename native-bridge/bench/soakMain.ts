import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { runSoak, type SoakReport } from './soak';

const mb = (value: number) => `${value.toFixed(1)} MB`;

/** One row per run, then first/last/max and the slope, as printed. */
export function formatSoakReport(report: SoakReport): string {
  const lines: string[] = [
    `${report.runs} diagnoses of ${path.relative(process.cwd(), report.config)} in one bridge process (pid ${report.bridgePid}, ${report.bridgeStarts} start${report.bridgeStarts === 1 ? '' : 's'})`,
    '',
  ];
  const header = ['run', 'time', 'RSS', 'peak RSS', 'fds', 'threads', 'top suspect'];
  const rows = report.samples.map((s) => [
    String(s.run),
    `${Math.round(s.ms)} ms`,
    mb(s.rssMb),
    mb(s.peakRssMb),
    String(s.fds),
    String(s.threads),
    s.topSuspect ?? '(none)',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows])
    lines.push(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  '));
  const { rssMb, fds, threads } = report;
  lines.push(
    '',
    `RSS      first ${mb(rssMb.first)}, last ${mb(rssMb.last)}, max ${mb(rssMb.max)}, min ${mb(rssMb.min)}`,
    `fds      first ${fds.first}, last ${fds.last}, max ${fds.max}`,
    `threads  first ${threads.first}, last ${threads.last}, max ${threads.max}`,
    `RSS slope over the last ${report.slopeWindow} runs: ${report.rssSlopeMbPerRun.toFixed(3)} MB/run (${report.rssGrowthInWindowMb >= 0 ? '+' : ''}${mb(report.rssGrowthInWindowMb)} from the first to the last of them)`,
  );
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '50' },
      config: { type: 'string', default: 'samples/tiny-llama/cases/rope-interleaved/ekka.json' },
      bridge: { type: 'string', default: 'dist/bridge.js' },
      window: { type: 'string', default: '40' },
    },
  });
  const modulePath = path.resolve(values.bridge);
  if (!existsSync(modulePath)) {
    console.error(`${values.bridge} not found: run \`npm run build\` first`);
    process.exitCode = 2;
    return;
  }
  const report = await runSoak({
    configPath: path.resolve(values.config),
    modulePath,
    runs: Number(values.runs),
    slopeWindow: Number(values.window),
    log: (line) => console.error(line),
  });
  console.log(formatSoakReport(report));
  await fs.mkdir(path.resolve('bench-results'), { recursive: true });
  await fs.writeFile(
    path.resolve('bench-results/soak.json'),
    `${JSON.stringify(report, null, 2)}\n`,
  );
  console.log('\nWrote bench-results/soak.json');
}

if (require.main === module) void main();
