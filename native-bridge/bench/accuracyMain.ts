import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as prettier from 'prettier';
import { listCases, runAccuracyBenchmark, type CaseRecord, type ScoredOutcome } from './accuracy';
import { benchmarkPage, readmeBlock, replaceBlock } from './accuracyDocs';
import { splitSection } from './accuracyReport';

/**
 * `npm run bench:accuracy [-- --split dev|test|all] [--only TEXT] [--jobs N] [--series DIR] [--docs]`: runs the generated
 * cases (build/hf-bench/cases) and our own samples (samples/benchmark/cases), prints a line per
 * case and the tables per split, writes bench-results/accuracy.json; --docs also writes
 * docs/benchmark.md and the README's figures; --series writes each generated case's compared
 * series (ratio and input ratio per module output) to DIR/<case>.json.
 */
interface Options {
  cases: string;
  split: string;
  only?: string;
  docs: boolean;
  jobs: number;
  series?: string;
}

function parse(argv: readonly string[]): Options {
  const options: Options = {
    cases: 'build/hf-bench/cases',
    split: 'all',
    docs: false,
    jobs: 1,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--docs') options.docs = true;
    else if (arg === '--split') options.split = argv[++i] ?? 'all';
    else if (arg === '--only') options.only = argv[++i];
    else if (arg === '--jobs') options.jobs = Number(argv[++i]);
    else if (arg === '--series') options.series = argv[++i];
    else if (arg === '--cases') options.cases = argv[++i] ?? options.cases;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!['dev', 'test', 'all'].includes(options.split)) {
    throw new Error(`--split must be dev, test or all, not ${options.split}`);
  }
  if (!Number.isInteger(options.jobs) || options.jobs < 1) {
    throw new Error('--jobs must be a whole number of at least 1');
  }
  if (options.docs && (options.split !== 'all' || options.only)) {
    throw new Error('--docs needs every case: leave out --split and --only');
  }
  return options;
}

const mark = (o: ScoredOutcome, control: boolean) =>
  control ? (o.falseAlarm ? 'ALARM' : 'quiet') : o.pass1 ? 'top1' : o.pass5 ? 'top5' : 'miss';

function printCase(c: CaseRecord): void {
  const control = c.expected.module === null;
  const baselines = Object.values(c.baselines)
    .map((o) => mark(o, control))
    .join(' ');
  const said = c.error ? `error: ${c.error.split('\n')[0]}` : (c.ours.top[0] ?? '-');
  console.log(
    `${c.id.padEnd(62)} ${mark(c.ours, control).padEnd(6)} ${baselines.padEnd(24)} ${(c.ms / 1000).toFixed(1)} s  ${said}`,
  );
}

async function main(): Promise<void> {
  const options = parse(process.argv.slice(2));
  const generated = (await listCases(path.resolve(options.cases))).filter(
    (dir) =>
      (options.split === 'all' || path.basename(dir).startsWith(`${options.split}-`)) &&
      (!options.only || path.basename(dir).includes(options.only)),
  );
  const samples =
    options.split === 'all'
      ? (await listCases(path.resolve('samples/benchmark/cases'))).filter(
          (dir) => !options.only || path.basename(dir).includes(options.only),
        )
      : [];
  if (generated.length === 0 && samples.length === 0) {
    throw new Error(`no cases under ${options.cases}: run samples/hf-bench/generate.py first`);
  }
  console.log(`case${' '.repeat(59)}ours   baselines (${4})          time  top suspect`);
  const cases = await runAccuracyBenchmark(
    generated,
    printCase,
    options.jobs,
    options.series && path.resolve(options.series),
  );
  const own = await runAccuracyBenchmark(samples, printCase);
  const splits = ['dev', 'test'].filter((s) => cases.some((c) => c.expected.split === s));
  for (const split of splits) {
    console.log(`\n## ${split} split\n`);
    console.log(splitSection(cases.filter((c) => c.expected.split === split)));
  }
  if (own.length) {
    console.log('\n## samples/benchmark (written with the method)\n');
    console.log(splitSection(own));
  }
  const out = path.resolve('bench-results/accuracy.json');
  await fs.mkdir(path.dirname(out), { recursive: true });
  await fs.writeFile(out, `${JSON.stringify({ cases, samples: own }, null, 2)}\n`);
  console.log(`\nWrote ${path.relative(process.cwd(), out)}`);
  if (options.docs) {
    const format = (text: string) => prettier.format(text, { parser: 'markdown' });
    await fs.writeFile('docs/benchmark.md', await format(benchmarkPage(cases, own)));
    const readme = await fs.readFile('README.md', 'utf8');
    await fs.writeFile('README.md', await format(replaceBlock(readme, readmeBlock(cases))));
    console.log('Wrote docs/benchmark.md and the README figures');
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
