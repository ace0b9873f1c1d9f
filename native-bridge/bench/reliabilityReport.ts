/**
 * Runs the bad-input corpus (test/fixtures/bad/cases.ts) the two ways a user meets the engine —
 * the CLI as a child process, and one long-lived bridge process — judges each answer and renders
 * the table of docs/reliability.md. The bridge is reached through a small interface so that this
 * file stays free of the extension; reliabilityMain.ts and the test hand it a BridgeClient.
 */
import { spawn } from 'node:child_process';
import { formatReport } from '../cli/report';
import type { DiagnosisResult } from '../diagnosis/result';
import type { RunDiagnosisParams } from '../protocol';

export type CaseCategory =
  | 'onnx model'
  | 'inputs'
  | 'ekka.json'
  | 'dump'
  | 'activations'
  | 'pytorch';

/** One bad (or odd but valid) input and the answer the engine owes it. */
export interface ReliabilityCase {
  id: string;
  category: CaseCategory;
  description: string;
  /** Writes the case into `dir` (a fresh folder) and returns the ekka.json to diagnose. */
  build(dir: string): Promise<string>;
  /**
   * What the answer must match: the error message (it names the file or record), or for a
   * `diagnosis` outcome the CLI's text report.
   */
  expected: RegExp;
  /** `error` (default): exit 2 and a BridgeError. `diagnosis`: the input is valid; exit 0. */
  outcome?: 'error' | 'diagnosis';
  /** The engine's error kind the bridge must report (config, model, input, runtime). */
  kind?: string;
  /** Left out, with a note, where the interpreter cannot import torch. */
  needs?: 'torch';
  /** Never run; the reason is reported. */
  skip?: string;
  /** A product bug the case shows: the run is reported as failing, the test marks it pending. */
  knownBug?: string;
  /** Something the reader of the report should know about a passing answer. */
  note?: string;
}

/** What the CLI did. */
export interface CliObservation {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

/** What a bridge request answered, and whether the process that took it is still the same. */
export interface BridgeObservation {
  /** The error's kind, or undefined when a result came back. */
  errorKind?: string;
  message: string;
  result?: DiagnosisResult;
  ms: number;
  timedOut: boolean;
  /** Same pid before and after, and that pid still alive. */
  alive: boolean;
  pid?: number;
}

/** The part of the extension's BridgeClient the corpus needs. */
export interface BridgeDriver {
  readonly pid: number | undefined;
  /** Processes started so far: 1 when one process served everything. */
  readonly starts: number;
  runDiagnosis(
    params: RunDiagnosisParams,
    handlers?: object,
    cancellation?: {
      isCancellationRequested: boolean;
      onCancellationRequested(listener: () => void): { dispose(): void };
    },
  ): Promise<DiagnosisResult>;
}

export type CaseStatus = 'pass' | 'fail' | 'skipped';

export interface CaseOutcome {
  id: string;
  category: CaseCategory;
  description: string;
  outcome: 'error' | 'diagnosis';
  status: CaseStatus;
  /** Why the case failed (empty when it passed), or why it was skipped. */
  problems: string[];
  knownBug?: string;
  note?: string;
  /** The folder the case was built in, to shorten paths in messages. */
  dir?: string;
  cli?: CliObservation;
  bridge?: BridgeObservation;
}

export interface CorpusContext {
  /** dist/cli.js. */
  cliPath: string;
  bridge: BridgeDriver;
  /** Environment of the CLI runs (the bridge has its own, set when it was started). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Per run; longer counts as a hang. */
  timeoutMs?: number;
  /** Whether the PyTorch interpreter imports torch. */
  torch: boolean;
}

const DEFAULT_TIMEOUT_MS = 90_000;
/** A JavaScript stack frame: what a user must never see. */
const STACK_FRAME = /^\s+at .+/m;

function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs `node cli diagnose config`, killing it after `timeoutMs`. */
export function runCli(
  cliPath: string,
  configPath: string,
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CliObservation> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, 'diagnose', configPath], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, stdout, stderr, ms: performance.now() - started, timedOut });
    });
  });
}

/** Sends one runDiagnosis to the bridge; a request still running after `timeoutMs` is cancelled. */
export async function runInBridge(
  bridge: BridgeDriver,
  runId: string,
  configPath: string,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<BridgeObservation> {
  const pidBefore = bridge.pid;
  const listeners: (() => void)[] = [];
  const cancellation = {
    isCancellationRequested: false,
    onCancellationRequested(listener: () => void) {
      listeners.push(listener);
      return { dispose() {} };
    },
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    cancellation.isCancellationRequested = true;
    for (const listener of listeners) listener();
  }, timeoutMs);
  const started = performance.now();
  let observation: Omit<BridgeObservation, 'alive' | 'pid'>;
  try {
    const result = await bridge.runDiagnosis({ runId, configPath }, {}, cancellation);
    observation = { message: '', result, ms: performance.now() - started, timedOut };
  } catch (error) {
    const kind = (error as { kind?: unknown }).kind;
    observation = {
      errorKind: typeof kind === 'string' ? kind : 'unknown',
      message: error instanceof Error ? error.message : String(error),
      ms: performance.now() - started,
      timedOut,
    };
  } finally {
    clearTimeout(timer);
  }
  const pid = bridge.pid;
  // Before the first request there is no process yet: the one that answered is the reference.
  const alive = (pidBefore === undefined || pidBefore === pid) && isAlive(pid);
  return { ...observation, alive, pid };
}

/** The CLI's error message: stderr without the `ekka: ` prefix and the final newline. */
export function cliMessage(cli: CliObservation): string {
  return cli.stderr.replace(/^ekka: /, '').replace(/\n$/, '');
}

/** Everything wrong with the CLI's answer to `badCase`. */
export function checkCli(badCase: ReliabilityCase, cli: CliObservation): string[] {
  const problems: string[] = [];
  const seconds = (cli.ms / 1000).toFixed(1);
  if (cli.timedOut) return [`CLI: no answer after ${seconds} s (hang)`];
  const output = `${cli.stdout}\n${cli.stderr}`;
  if (STACK_FRAME.test(output)) problems.push('CLI: printed a stack trace');
  if (/internal error/.test(cli.stderr)) problems.push('CLI: reported an internal error');
  if (cli.signal) problems.push(`CLI: killed by ${cli.signal}`);
  if (badCase.outcome === 'diagnosis') {
    if (cli.exitCode !== 0) problems.push(`CLI: exit code ${cli.exitCode}, expected 0`);
    if (!badCase.expected.test(cli.stdout))
      problems.push(`CLI: report does not match ${String(badCase.expected)}`);
    return problems;
  }
  if (cli.exitCode !== 2) problems.push(`CLI: exit code ${cli.exitCode}, expected 2`);
  if (!cli.stderr.startsWith('ekka: ')) problems.push('CLI: stderr does not start with "ekka: "');
  else if ((cli.stderr.match(/^ekka: /gm) ?? []).length > 1)
    problems.push('CLI: more than one "ekka: " message');
  if (!badCase.expected.test(cliMessage(cli)))
    problems.push(`CLI: message does not match ${String(badCase.expected)}`);
  return problems;
}

/** Everything wrong with the bridge's answer to `badCase`. */
export function checkBridge(
  badCase: ReliabilityCase,
  bridge: BridgeObservation,
  cwd = process.cwd(),
): string[] {
  const problems: string[] = [];
  if (bridge.timedOut)
    problems.push(`bridge: no answer after ${(bridge.ms / 1000).toFixed(1)} s (hang)`);
  if (!bridge.alive) problems.push('bridge: the process that took the request is gone');
  if (badCase.outcome === 'diagnosis') {
    if (!bridge.result) {
      problems.push(`bridge: failed (${bridge.errorKind}) instead of diagnosing`);
    } else if (!badCase.expected.test(formatReport(bridge.result, cwd))) {
      problems.push(`bridge: report does not match ${String(badCase.expected)}`);
    }
    return problems;
  }
  if (bridge.result) {
    problems.push('bridge: returned a diagnosis instead of an error');
    return problems;
  }
  if (bridge.errorKind === 'internal' || bridge.errorKind === 'bridge')
    problems.push(`bridge: error of kind "${bridge.errorKind}"`);
  else if (badCase.kind && bridge.errorKind !== badCase.kind)
    problems.push(`bridge: error of kind "${bridge.errorKind}", expected "${badCase.kind}"`);
  if (STACK_FRAME.test(bridge.message)) problems.push('bridge: message holds a stack trace');
  if (!badCase.expected.test(bridge.message))
    problems.push(`bridge: message does not match ${String(badCase.expected)}`);
  return problems;
}

/**
 * Builds `badCase` in `dir`, runs it through the CLI and then the bridge, and judges both. The
 * two answers must also agree: the same message, or both a diagnosis.
 */
export async function runCase(
  badCase: ReliabilityCase,
  dir: string,
  context: CorpusContext,
): Promise<CaseOutcome> {
  const base: CaseOutcome = {
    id: badCase.id,
    category: badCase.category,
    description: badCase.description,
    outcome: badCase.outcome ?? 'error',
    status: 'skipped',
    problems: [],
    ...(badCase.knownBug ? { knownBug: badCase.knownBug } : {}),
    ...(badCase.note ? { note: badCase.note } : {}),
  };
  if (badCase.skip) return { ...base, problems: [badCase.skip] };
  if (badCase.needs === 'torch' && !context.torch)
    return { ...base, problems: ['the PyTorch interpreter cannot import torch'] };
  const configPath = await badCase.build(dir);
  const timeoutMs = context.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const cli = await runCli(context.cliPath, configPath, {
    env: context.env,
    cwd: context.cwd,
    timeoutMs,
  });
  const bridge = await runInBridge(context.bridge, badCase.id, configPath, timeoutMs);
  const problems = [...checkCli(badCase, cli), ...checkBridge(badCase, bridge, context.cwd)];
  if (
    base.outcome === 'error' &&
    !cli.timedOut &&
    bridge.errorKind !== undefined &&
    cliMessage(cli) !== bridge.message
  ) {
    problems.push('CLI and bridge messages differ');
  }
  return {
    ...base,
    status: problems.length ? 'fail' : 'pass',
    problems,
    dir,
    cli,
    bridge: { ...bridge, result: undefined },
  };
}

/** The answer in a line: the message's first line (or the report's first line), paths shortened. */
export function behaviourSeen(outcome: CaseOutcome, maxLength = 110): string {
  const { cli } = outcome;
  let text: string;
  if (!cli) text = outcome.problems[0] ?? '';
  else if (cli.timedOut) text = 'no answer (hang)';
  else if (cli.exitCode === 0 || cli.exitCode === 1) {
    // A diagnosis: its verdict line.
    const lines = cli.stdout.split('\n');
    text = lines.find((line) => /^(Change point|No divergence)/.test(line)) ?? lines[0] ?? '';
  } else {
    // "…: invalid diagnosis:" ends in a colon: the first problem listed below it says more.
    const [first = '', second] = cliMessage(cli).split('\n');
    text = first.endsWith(':') && second ? `${first} ${second.trim()}` : first;
  }
  if (outcome.dir) text = text.split(outcome.dir).join('…');
  text = text.replace(/\s+/g, ' ').trim();
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** Regular expressions in a problem as code, so that markdown leaves their `*` and `_` alone. */
function inlineCode(problem: string): string {
  return problem.replace(/ (\/.+\/[a-z]*)$/, ' `$1`');
}

export interface CorpusSummary {
  cases: number;
  passed: number;
  failed: number;
  skipped: number;
}

export function summarize(outcomes: readonly CaseOutcome[]): CorpusSummary {
  const count = (status: CaseStatus) => outcomes.filter((o) => o.status === status).length;
  return {
    cases: outcomes.length,
    passed: count('pass'),
    failed: count('fail'),
    skipped: count('skipped'),
  };
}

/** What the bridge did after the corpus: the good diagnosis it still owed. */
export interface BridgeAfterCorpus {
  samePid: boolean;
  pid?: number;
  starts: number;
  topSuspect?: string;
  expectedSuspect: string;
  ms: number;
}

/**
 * After the corpus: the bridge must still be the process that served it, and diagnose a good
 * config correctly (`expectedSuspect` first).
 */
export async function diagnoseAfterCorpus(
  bridge: BridgeDriver,
  configPath: string,
  expectedSuspect: string,
  firstPid: number | undefined,
): Promise<BridgeAfterCorpus> {
  const pidBefore = bridge.pid;
  const started = performance.now();
  let topSuspect: string | undefined;
  try {
    const result = await bridge.runDiagnosis({ runId: 'after-corpus', configPath });
    topSuspect = result.suspects[0]?.module;
  } catch (error) {
    topSuspect = `error: ${error instanceof Error ? error.message : String(error)}`;
  }
  const pid = bridge.pid;
  return {
    samePid: firstPid !== undefined && pidBefore === firstPid && pid === firstPid,
    ...(pid !== undefined ? { pid } : {}),
    starts: bridge.starts,
    ...(topSuspect !== undefined ? { topSuspect } : {}),
    expectedSuspect,
    ms: performance.now() - started,
  };
}

/** The markdown table, one row per case. */
export function reliabilityTable(outcomes: readonly CaseOutcome[]): string {
  const rows = [
    '| case | category | input | behaviour seen | exit | bridge alive | CLI / bridge ms | result |',
    '| ---- | -------- | ----- | -------------- | ---- | ------------ | --------------- | ------ |',
  ];
  for (const outcome of outcomes) {
    const { cli, bridge } = outcome;
    const exit = cli ? (cli.timedOut ? 'hang' : String(cli.exitCode ?? cli.signal)) : '—';
    const alive = bridge ? (bridge.alive ? 'yes' : '**no**') : '—';
    const ms = cli && bridge ? `${cli.ms.toFixed(0)} / ${bridge.ms.toFixed(0)}` : '—';
    const result =
      outcome.status === 'fail' ? `**fail**${outcome.knownBug ? ' (known)' : ''}` : outcome.status;
    rows.push(
      `| ${[
        `\`${outcome.id}\``,
        outcome.category,
        outcome.description,
        // As code: messages hold `*`, `_` and `<…>` that markdown would read as markup.
        `\`${behaviourSeen(outcome, 90).replace(/`/g, "'")}\``,
        exit,
        alive,
        ms,
        result,
      ]
        .map(cell)
        .join(' | ')} |`,
    );
  }
  return rows.join('\n');
}

export const FAULTS_MARKER = '<!-- faults and soak -->';

/**
 * docs/reliability.md: how it was made, the totals, the bridge's health after the corpus, the
 * table, notes on skipped cases, then `tail` (what follows the faults-and-soak marker in the file
 * being replaced, kept as it is).
 */
export function renderReliabilityMarkdown(
  outcomes: readonly CaseOutcome[],
  after: BridgeAfterCorpus | undefined,
  options: { command: string; tail?: string; environment?: string },
): string {
  const summary = summarize(outcomes);
  const ran = summary.cases - summary.skipped;
  const failing = outcomes.filter((o) => o.status === 'fail');
  const skipped = outcomes.filter((o) => o.status === 'skipped');
  const cliTotal = outcomes.reduce((sum, o) => sum + (o.cli?.ms ?? 0), 0);
  const bridgeTotal = outcomes.reduce((sum, o) => sum + (o.bridge?.ms ?? 0), 0);
  const lines = [
    '# Reliability: bad inputs',
    '',
    `<!-- Generated by \`${options.command}\`; edit test/fixtures/bad/cases.ts, not this table. -->`,
    '',
    `This file is generated by \`${options.command}\`: it builds every case of the bad-input`,
    'corpus (`test/fixtures/bad/cases.ts`, built by `test/fixtures/bad/generate.ts`) in a temporary',
    'folder and diagnoses it twice: with the CLI (`node dist/cli.js diagnose <case>/ekka.json`),',
    'and through one bridge process (`dist/bridge.js`, driven by the extension’s `BridgeClient`)',
    'that serves every case in turn. A case passes when both answer as the user needs: a bad input',
    'gets exit code 2 and one `ekka: <file>: …` message matching the expected text, with no stack',
    'trace, and the same message from the bridge as an error of the expected kind (never',
    '`internal`), the bridge process staying alive; an odd but valid input gets its diagnosis.',
    '`npm test` runs the same cases (`test/reliability/badInputs.test.ts`).',
    '',
    `**${summary.cases} cases: ${summary.passed} pass, ${summary.failed} fail, ${summary.skipped} skipped.**`,
    `Run time ${(cliTotal / 1000).toFixed(1)} s through the CLI (one process per case), ` +
      `${(bridgeTotal / 1000).toFixed(1)} s through the bridge (${ran} requests to one process).`,
  ];
  if (options.environment) lines.push(`Measured on ${options.environment}.`);
  if (after) {
    lines.push(
      '',
      after.samePid && after.topSuspect === after.expectedSuspect
        ? `After the corpus the same bridge process (started ${after.starts} time${after.starts === 1 ? '' : 's'}) ` +
            `diagnosed \`samples/tiny-llama/cases/rope-interleaved\` correctly (top suspect ` +
            `\`${after.topSuspect}\`, ${after.ms.toFixed(0)} ms).`
        : `**After the corpus the bridge did not answer the good diagnosis as it should:** ` +
            `same process ${after.samePid ? 'yes' : 'no'} (started ${after.starts} times), ` +
            `top suspect \`${after.topSuspect ?? 'none'}\`, expected \`${after.expectedSuspect}\`.`,
    );
  }
  lines.push('', reliabilityTable(outcomes), '');
  if (failing.length) {
    lines.push('## Failing cases', '');
    for (const outcome of failing) {
      lines.push(`- \`${outcome.id}\`: ${outcome.problems.map(inlineCode).join('; ')}.`);
      if (outcome.knownBug) lines.push(`  Known bug: ${outcome.knownBug}.`);
    }
    lines.push('');
  }
  const noted = outcomes.filter((o) => o.note);
  if (noted.length) {
    lines.push('## Notes', '');
    for (const outcome of noted) lines.push(`- \`${outcome.id}\`: ${outcome.note}.`);
    lines.push('');
  }
  if (skipped.length) {
    lines.push('## Skipped cases', '');
    for (const outcome of skipped)
      lines.push(`- \`${outcome.id}\`: ${outcome.problems.join('; ')}.`);
    lines.push('');
  }
  lines.push(FAULTS_MARKER);
  // The tail is someone else's text: kept byte for byte.
  return `${lines.join('\n')}${options.tail || '\n'}`;
}

/** What follows the marker in an existing file (kept when the table is regenerated). */
export function tailAfterMarker(markdown: string): string {
  const at = markdown.indexOf(FAULTS_MARKER);
  return at < 0 ? '' : markdown.slice(at + FAULTS_MARKER.length);
}
