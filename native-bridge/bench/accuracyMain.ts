import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { BASELINES } from './baselines';
import { listCases, runAccuracyBenchmark, type CaseRecord, type ScoredOutcome } from './accuracy';

/** `npm run bench:accuracy [casesDir]`: prints a table per case and the totals, writes the JSON. */
async function main(): Promise<void> {
  const casesDir = path.resolve(process.argv[2] ?? 'samples/benchmark/cases');
  const names = Object.keys(BASELINES);
  const mark = (o: ScoredOutcome, control: boolean) =>
    control ? (o.falseAlarm ? 'ALARM' : 'quiet') : o.pass1 ? 'top1' : o.pass5 ? 'top5' : 'miss';
  const header = ['case', 'cause', 'ours', 'line', ...names, 'ms'];
  const rows: string[][] = [];
  const print = (row: string[]) =>
    console.log(
      row
        .map((cell, i) => cell.padEnd(i === 0 ? 30 : i === 1 ? 22 : 20))
        .join(' ')
        .trimEnd(),
    );
  print(header);
  const report = await runAccuracyBenchmark(await listCases(casesDir), (c: CaseRecord) => {
    const control = c.expected.module === null;
    const row = [
      c.id,
      c.cause ?? 'control',
      `${mark(c.ours, control)}${control ? '' : ` (${c.ours.top[0] ?? '-'})`}`.slice(0, 20),
      control ? '' : c.ours.lineHit ? 'hit' : 'miss',
      ...names.map((n) => mark(c.baselines[n]!, control)),
      c.ms.toFixed(0),
    ];
    rows.push(row);
    print(row);
  });
  console.log('');
  console.log('method                 pass@1  pass@5  line hit  false alarms');
  for (const [method, t] of Object.entries(report.totals)) {
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padEnd(8);
    console.log(
      `${method.padEnd(23)}${pct(t.pass1)}${pct(t.pass5)}${pct(t.lineHit)}  ${pct(t.falseAlarms)}`,
    );
  }
  const first = report.totals.ours!;
  console.log(`\n${first.bugCases} bug cases, ${first.controls} controls.`);
  const out = path.resolve('bench-results/accuracy.json');
  await fs.mkdir(path.dirname(out), { recursive: true });
  await fs.writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`Wrote ${path.relative(process.cwd(), out)}`);
}

void main();
