/**
 * Soak: many consecutive diagnoses in one bridge process, driven the way the extension drives it
 * (BridgeClient over IPC), sampling the process's resident memory, open file descriptors and
 * threads after each one. Memory that climbs run after run, or descriptors that pile up, mean
 * something from a finished run is kept (sessions, locators, error maps beyond the last few).
 * Linux only: the figures come from /proc.
 */
import { promises as fs } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { BridgeClient } from '../../extension/bridge/bridgeClient';

/** The bridge process after one diagnosis. */
export interface SoakSample {
  /** 1-based. */
  run: number;
  /** Wall time of the request, as the extension sees it. */
  ms: number;
  /** VmRSS and VmHWM (peak resident) from /proc/<pid>/status, in MB (2^20 bytes). */
  rssMb: number;
  peakRssMb: number;
  /** Entries of /proc/<pid>/fd. */
  fds: number;
  threads: number;
  /** The top suspect, to see that every run found the same thing. */
  topSuspect: string | null;
}

export interface SoakSeries {
  first: number;
  last: number;
  max: number;
  min: number;
}

export interface SoakReport {
  config: string;
  runs: number;
  bridgePid: number;
  /** Bridge processes started: 1 unless it crashed or was restarted. */
  bridgeStarts: number;
  samples: SoakSample[];
  rssMb: SoakSeries;
  fds: SoakSeries;
  threads: SoakSeries;
  /** Least-squares slope of RSS over the last `slopeWindow` runs, in MB per run. */
  rssSlopeMbPerRun: number;
  slopeWindow: number;
  /** RSS of the last run minus that of the first run in the window, in MB. */
  rssGrowthInWindowMb: number;
}

export interface SoakOptions {
  /** Absolute path of the ekka.json to diagnose again and again. */
  configPath: string;
  /** The bridge entry (dist/bridge.js). */
  modulePath: string;
  runs: number;
  /** How many of the last runs the slope is fitted over (default 40, at most runs). */
  slopeWindow?: number;
  log?: (line: string) => void;
}

interface ProcessFigures {
  rssMb: number;
  peakRssMb: number;
  fds: number;
  threads: number;
}

/** Resident memory, peak, open descriptors and threads of process `pid`, from /proc. */
export async function processFigures(pid: number): Promise<ProcessFigures> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status);
    if (!match) throw new Error(`/proc/${pid}/status has no ${name}`);
    return Number(match[1]);
  };
  const fds = (await fs.readdir(`/proc/${pid}/fd`)).length;
  return {
    rssMb: field('VmRSS') / 1024,
    peakRssMb: field('VmHWM') / 1024,
    fds,
    threads: field('Threads'),
  };
}

/** Least-squares slope of `values` against their index. */
export function slope(values: readonly number[]): number {
  const n = values.length;
  if (n < 2) return 0;
  const meanX = (n - 1) / 2;
  const meanY = values.reduce((sum, v) => sum + v, 0) / n;
  let num = 0;
  let den = 0;
  values.forEach((v, i) => {
    num += (i - meanX) * (v - meanY);
    den += (i - meanX) ** 2;
  });
  return num / den;
}

function series(values: readonly number[]): SoakSeries {
  return {
    first: values[0]!,
    last: values[values.length - 1]!,
    max: Math.max(...values),
    min: Math.min(...values),
  };
}

/** Runs `runs` diagnoses of one config in one bridge process, sampling it after each. */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  if (process.platform !== 'linux') throw new Error('the soak reads /proc: Linux only');
  const log = options.log ?? (() => undefined);
  const bridgeLog: string[] = [];
  const client = new BridgeClient({
    modulePath: options.modulePath,
    // Never stop for idleness in between: the point is one long-lived process.
    idleMs: 60 * 60_000,
    log: (line) => bridgeLog.push(line),
  });
  const samples: SoakSample[] = [];
  let bridgePid: number | undefined;
  try {
    for (let run = 1; run <= options.runs; run++) {
      const started = performance.now();
      const result = await client.runDiagnosis({
        runId: `soak-${run}`,
        configPath: options.configPath,
      });
      const ms = performance.now() - started;
      const pid = client.pid;
      if (pid === undefined) throw new Error(`no bridge process after run ${run}`);
      if (bridgePid !== undefined && pid !== bridgePid) {
        throw new Error(
          `the bridge process changed (${bridgePid} → ${pid}): ${bridgeLog.join('\n')}`,
        );
      }
      bridgePid = pid;
      const figures = await processFigures(pid);
      const sample: SoakSample = {
        run,
        ms,
        ...figures,
        topSuspect: result.suspects[0]?.module ?? null,
      };
      samples.push(sample);
      log(
        `run ${run}: ${ms.toFixed(0)} ms, RSS ${figures.rssMb.toFixed(1)} MB, ${figures.fds} fds, ${figures.threads} threads`,
      );
    }
  } finally {
    await client.dispose();
  }
  const window = Math.min(options.slopeWindow ?? 40, samples.length);
  const tail = samples.slice(samples.length - window).map((s) => s.rssMb);
  return {
    config: options.configPath,
    runs: options.runs,
    bridgePid: bridgePid!,
    bridgeStarts: client.starts,
    samples,
    rssMb: series(samples.map((s) => s.rssMb)),
    fds: series(samples.map((s) => s.fds)),
    threads: series(samples.map((s) => s.threads)),
    rssSlopeMbPerRun: slope(tail),
    slopeWindow: window,
    rssGrowthInWindowMb: tail[tail.length - 1]! - tail[0]!,
  };
}
