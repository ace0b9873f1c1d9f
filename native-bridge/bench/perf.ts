import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { PERF_MODEL, writePerfModel, type PerfModelShape } from './perfModel';

const run = promisify(execFile);

/** Runs one probe in a child process and returns its JSON line. */
export async function probe(
  args: string[],
): Promise<Record<string, number | string | boolean | null>> {
  const script = path.join(__dirname, 'perfProbe.ts');
  const { stdout } = await run(process.execPath, ['--import', 'tsx', script, ...args], {
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<
    string,
    number | string | boolean | null
  >;
}

export interface DepthFigures {
  layers: number;
  plainTargetMs: number;
  plainReferenceMs: number;
  plainPeakRssMb: number;
  partitioned: Record<string, number | string | boolean | null>;
  wholeGraph?: Record<string, number | string | boolean | null>;
  activations: Record<string, number | string | boolean | null>;
  /** Partitioned diagnosis time over plain target + plain reference. */
  timeRatio: number;
}

export interface PerfReport {
  shape: PerfModelShape;
  comparison: Record<string, number | string | boolean | null>;
  depths: DepthFigures[];
}

/** Writes the models, inputs and configs of one depth; returns the folder. */
async function prepare(root: string, shape: PerfModelShape): Promise<string> {
  const dir = path.join(
    root,
    `h${shape.hidden}-i${shape.intermediate}-a${shape.heads}-v${shape.vocab}-s${shape.sequence}-l${shape.layers}`,
  );
  await fs.mkdir(dir, { recursive: true });
  const bugLayer = Math.floor(shape.layers / 2);
  await writePerfModel(path.join(dir, 'reference.onnx'), shape);
  await writePerfModel(path.join(dir, 'target.onnx'), shape, bugLayer);
  const ids = Array.from({ length: shape.sequence }, (_, i) => (i * 7919) % shape.vocab);
  await fs.writeFile(
    path.join(dir, 'input.json'),
    JSON.stringify({ input_ids: { dtype: 'int64', shape: [1, shape.sequence], data: ids } }),
  );
  for (const capture of ['partitioned', 'whole-graph']) {
    await fs.writeFile(
      path.join(dir, `${capture}.json`),
      JSON.stringify({
        target: { model: 'target.onnx', optimization: 'all' },
        reference: { model: 'reference.onnx', optimization: 'all' },
        input: 'input.json',
        capture,
      }),
    );
  }
  return dir;
}

/**
 * The performance benchmark: plain inference of target and reference, the diagnosis in both
 * capture modes, activation sizes, comparison throughput, for each depth. Each figure comes from
 * its own child process.
 */
export async function runPerfBenchmark(options: {
  root: string;
  shape: PerfModelShape;
  depths: number[];
  /** Whole-graph capture of the deepest model holds every activation; skip it there if asked. */
  wholeGraphUpTo: number;
  compareMegabytes: number;
  log?: (line: string) => void;
}): Promise<PerfReport> {
  const log = options.log ?? (() => undefined);
  const comparison = await probe(['compare', String(options.compareMegabytes)]);
  log(`comparison: ${Number(comparison.gbPerSecond).toFixed(2)} GB/s on one core`);
  const depths: DepthFigures[] = [];
  for (const layers of options.depths) {
    const shape = { ...options.shape, layers };
    const dir = await prepare(options.root, shape);
    const input = path.join(dir, 'input.json');
    const plainTarget = await probe(['plain', path.join(dir, 'target.onnx'), input]);
    const plainReference = await probe(['plain', path.join(dir, 'reference.onnx'), input]);
    const partitioned = await probe(['diagnose', path.join(dir, 'partitioned.json')]);
    const wholeGraph =
      layers <= options.wholeGraphUpTo
        ? await probe(['diagnose', path.join(dir, 'whole-graph.json')])
        : undefined;
    const activations = await probe(['activations', path.join(dir, 'target.onnx'), input]);
    const plainMs = Number(plainTarget.totalMs) + Number(plainReference.totalMs);
    const figures: DepthFigures = {
      layers,
      plainTargetMs: Number(plainTarget.totalMs),
      plainReferenceMs: Number(plainReference.totalMs),
      plainPeakRssMb: Math.max(Number(plainTarget.peakRssMb), Number(plainReference.peakRssMb)),
      partitioned,
      activations,
      timeRatio: Number(partitioned.totalMs) / plainMs,
      ...(wholeGraph ? { wholeGraph } : {}),
    };
    depths.push(figures);
    log(`layers ${layers}: done`);
  }
  return { shape: options.shape, comparison, depths };
}

export { PERF_MODEL };
