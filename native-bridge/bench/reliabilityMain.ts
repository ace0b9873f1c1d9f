import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as prettier from 'prettier';
import { BridgeClient } from '../../extension/bridge/bridgeClient';
import { BAD_INPUT_CASES } from '../../test/fixtures/bad/cases';
import { hasTorch } from '../../test/fixtures/bad/generate';
import {
  behaviourSeen,
  diagnoseAfterCorpus,
  renderReliabilityMarkdown,
  runCase,
  summarize,
  tailAfterMarker,
  type CaseOutcome,
} from './reliabilityReport';

const COMMAND = 'npm run bench:reliability';
const GOOD_CASE = 'samples/tiny-llama/cases/rope-interleaved';

/**
 * `npm run bench:reliability [out.md]`: runs the bad-input corpus through the CLI and one bridge
 * process, prints a line per case, and writes docs/reliability.md (keeping what follows its
 * faults-and-soak marker) and bench-results/reliability.json. Needs `npm run build` first.
 */
async function main(): Promise<void> {
  const out = path.resolve(process.argv[2] ?? 'docs/reliability.md');
  const cliPath = path.resolve('dist/cli.js');
  const bridgePath = path.resolve('dist/bridge.js');
  for (const bundle of [cliPath, bridgePath]) {
    await fs.access(bundle).catch(() => {
      throw new Error(`${path.relative('.', bundle)} is missing: run \`npm run build\` first`);
    });
  }
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-bad-inputs-'));
  const bridge = new BridgeClient({ modulePath: bridgePath, env: process.env });
  const torch = hasTorch();
  const outcomes: CaseOutcome[] = [];
  let firstPid: number | undefined;
  try {
    for (const badCase of BAD_INPUT_CASES) {
      const outcome = await runCase(badCase, path.join(root, badCase.id), {
        cliPath,
        bridge,
        cwd: process.cwd(),
        torch,
      });
      firstPid ??= bridge.pid;
      outcomes.push(outcome);
      console.log(
        `${outcome.status.padEnd(8)}${badCase.id.padEnd(36)}${behaviourSeen(outcome, 90)}` +
          (outcome.status === 'fail' ? `\n        ${outcome.problems.join('\n        ')}` : ''),
      );
    }
    const expected = JSON.parse(
      await fs.readFile(path.join(GOOD_CASE, 'expected.json'), 'utf8'),
    ) as { module: string };
    const after = await diagnoseAfterCorpus(
      bridge,
      path.resolve(GOOD_CASE, 'ekka.json'),
      expected.module,
      firstPid,
    );
    const existing = await fs.readFile(out, 'utf8').catch(() => '');
    const markdown = renderReliabilityMarkdown(outcomes, after, {
      command: COMMAND,
      tail: tailAfterMarker(existing),
      environment: `${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'CPU'}, Node ${process.version}, ${torch ? 'with' : 'without'} torch`,
    });
    // Formatted as `prettier --check .` (npm run lint) wants it.
    const options = (await prettier.resolveConfig(out)) ?? {};
    await fs.writeFile(out, await prettier.format(markdown, { ...options, filepath: out }));
    const json = path.resolve('bench-results/reliability.json');
    await fs.mkdir(path.dirname(json), { recursive: true });
    await fs.writeFile(json, `${JSON.stringify({ outcomes, after }, null, 2)}\n`);
    const summary = summarize(outcomes);
    console.log(
      `\n${summary.cases} cases: ${summary.passed} pass, ${summary.failed} fail, ${summary.skipped} skipped; ` +
        `bridge after the corpus: ${after.samePid ? 'same process' : 'NOT the same process'}, ` +
        `top suspect ${after.topSuspect ?? 'none'}`,
    );
    console.log(`Wrote ${path.relative('.', out)} and ${path.relative('.', json)}`);
  } finally {
    await bridge.dispose();
    await fs.rm(root, { recursive: true, force: true });
  }
}

void main();
