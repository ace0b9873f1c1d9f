/**
 * `npm run bench:drill`: what the drill-down costs on transformers' own models (the PyTorch
 * fixtures with a planted bug). Per case: the whole diagnosis, the drill-down's wall time (its
 * helper runs for the three runs side by side, each running only the drilled modules), and the
 * target's capture run (one captured forward plus its grafts), each including the helper's start.
 * Prints a table; nothing is written.
 */
import * as path from 'node:path';
import { loadDiagnosis } from '../diagnosis/capturedConfig';
import { diagnose } from '../diagnosis/diagnose';

const CASES = [
  'gemma-norm-offset',
  'llama-gelu',
  'llama-missing-residual',
  'llama-down-proj-scaled',
  'llama-up-proj-faint',
];
const FOLDER = path.resolve('test/fixtures/hf-pytorch');

const seconds = (ms: number | undefined) => (ms === undefined ? '–' : (ms / 1000).toFixed(2));

async function main(): Promise<void> {
  const rows = [
    ['case', 'statement', 'drilled', 'ops', 'total s', 'target run s', 'drill s', 'drill / run'],
  ];
  for (const id of CASES) {
    const result = await diagnose(await loadDiagnosis(path.join(FOLDER, id, 'ekka.json')));
    const drilled = result.suspects.filter((s) => s.drillDown);
    const top = result.suspects[0];
    const drillMs = result.timings.drillMs;
    const runMs = result.timings.runsMs.target;
    rows.push([
      id,
      top?.statement
        ? `${path.basename(top.statement.file)}:${top.statement.line} ${top.statement.op}`
        : '–',
      String(new Set(drilled.map((s) => s.drillDown!.module)).size),
      String(drilled.reduce((n, s) => n + s.drillDown!.ops.length, 0)),
      seconds(result.timings.totalMs),
      seconds(runMs),
      seconds(drillMs),
      drillMs !== undefined && runMs ? (drillMs / runMs).toFixed(2) : '–',
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const row of rows) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join('  '));
}

main().catch((cause: unknown) => {
  console.error(cause instanceof Error ? cause.message : cause);
  process.exit(1);
});
