import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { PERF_MODEL, runPerfBenchmark, type PerfReport } from './perf';

const seconds = (ms: unknown) => `${(Number(ms) / 1000).toFixed(2)} s`;
const mb = (value: unknown) => `${Math.round(Number(value))} MB`;

/** The table and the four targets, as printed. */
export function formatPerfReport(report: PerfReport): string {
  const lines: string[] = [];
  const s = report.shape;
  lines.push(
    `LLaMA-style decoder: hidden ${s.hidden}, intermediate ${s.intermediate}, ${s.heads} heads, vocab ${s.vocab}, sequence ${s.sequence}; float32, CPU`,
    `comparison: ${Number(report.comparison.gbPerSecond).toFixed(2)} GB/s of activation pairs on one core`,
    '',
  );
  const header = [
    'layers',
    'plain target',
    'plain ref',
    'plain peak',
    'partitioned',
    '× plain',
    'peak RSS',
    'whole-graph',
    'peak RSS',
    'activations',
    'largest seg',
    'first result',
    'after seg',
    'top suspect',
  ];
  const rows = report.depths.map((d) => [
    String(d.layers),
    seconds(d.plainTargetMs),
    seconds(d.plainReferenceMs),
    mb(d.plainPeakRssMb),
    seconds(d.partitioned.totalMs),
    d.timeRatio.toFixed(2),
    mb(d.partitioned.peakRssMb),
    d.wholeGraph ? seconds(d.wholeGraph.totalMs) : 'skipped',
    d.wholeGraph ? mb(d.wholeGraph.peakRssMb) : '',
    mb(d.activations.totalMb),
    mb(d.activations.largestSegmentMb),
    seconds(d.partitioned.firstResultMs),
    `${Math.round(Number(d.partitioned.firstResultAfterSegmentMs))} ms`,
    String(d.partitioned.topSuspect),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows])
    lines.push(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  '));
  lines.push('', 'partitioned diagnosis time, by part:');
  for (const d of report.depths) {
    const p = d.partitioned;
    const rest = Number(p.totalMs) - Number(p.referenceMs) - Number(p.targetMs);
    lines.push(
      `  ${d.layers} layers: reference run ${seconds(p.referenceMs)}, target run ${seconds(p.targetMs)} (each: read weights, build and run every segment); comparison, localization and suspect reruns ${seconds(rest)}`,
    );
  }
  lines.push('', 'targets:');
  const compareOk = Number(report.comparison.gbPerSecond) >= 1;
  lines.push(`  comparison ≥ 1 GB/s per core: ${compareOk ? 'met' : 'not met'}`);
  for (const d of report.depths) {
    const memoryBound = d.plainPeakRssMb + 3 * Number(d.activations.largestSegmentMb);
    lines.push(
      `  ${d.layers} layers: time ${d.timeRatio.toFixed(2)} × plain (≤ 1.3: ${d.timeRatio <= 1.3 ? 'met' : 'not met'}); ` +
        `peak ${mb(d.partitioned.peakRssMb)} vs plain peak + 3 × largest segment = ${mb(memoryBound)} (${Number(d.partitioned.peakRssMb) <= memoryBound ? 'met' : 'not met'}); ` +
        `first result ${Math.round(Number(d.partitioned.firstResultAfterSegmentMs))} ms after its segment (≤ 1 s: ${Number(d.partitioned.firstResultAfterSegmentMs) <= 1000 ? 'met' : 'not met'})`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      depths: { type: 'string', default: '4,8,16' },
      hidden: { type: 'string' },
      sequence: { type: 'string' },
      'whole-graph-up-to': { type: 'string', default: '8' },
    },
  });
  const shape = { ...PERF_MODEL };
  if (values.hidden) {
    shape.hidden = Number(values.hidden);
    shape.intermediate = Math.round((shape.hidden * 11) / 4);
    shape.heads = Math.max(1, shape.hidden / 64);
  }
  if (values.sequence) shape.sequence = Number(values.sequence);
  const report = await runPerfBenchmark({
    root: path.resolve('bench-results/perf-models'),
    shape,
    depths: values.depths.split(',').map(Number),
    wholeGraphUpTo: Number(values['whole-graph-up-to']),
    compareMegabytes: 256,
    log: (line) => console.error(line),
  });
  console.log(formatPerfReport(report));
  await fs.writeFile(
    path.resolve('bench-results/perf.json'),
    `${JSON.stringify(report, null, 2)}\n`,
  );
  console.log('\nWrote bench-results/perf.json');
}

if (require.main === module) void main();
