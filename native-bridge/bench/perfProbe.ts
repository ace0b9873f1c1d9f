/**
 * One measurement in a fresh process, so that its peak RSS is its own. Prints one JSON line.
 *   plain <model.onnx> <inputs.json>     session creation + one run, as a user runs the model
 *   diagnose <ekka.json>                 the full diagnosis
 *   activations <model.onnx> <inputs>    bytes of captured values, per segment
 *   compare <megabytes>                  comparison throughput on one core
 */
import * as ort from 'onnxruntime-node';
import { comparePair } from '../compare/metrics';
import { loadConfig } from '../diagnosis/config';
import { diagnose } from '../diagnosis/diagnose';
import { readInputFile } from '../runners/inputFile';
import { OnnxCapture } from '../runners/onnxRunner';

const peakRssMb = () => process.resourceUsage().maxRSS / 1024;

async function plain(model: string, inputsFile: string): Promise<Record<string, number>> {
  const inputs = await readInputFile(inputsFile);
  const started = performance.now();
  const session = await ort.InferenceSession.create(model);
  const created = performance.now();
  const feeds = Object.fromEntries(
    inputs.map((i) => [
      i.name,
      new ort.Tensor('int64', BigInt64Array.from(i.data, BigInt), i.shape),
    ]),
  );
  await session.run(feeds);
  const ran = performance.now();
  await session.release();
  return {
    totalMs: ran - started,
    createMs: created - started,
    runMs: ran - created,
    peakRssMb: peakRssMb(),
  };
}

async function diagnoseFile(configFile: string): Promise<Record<string, unknown>> {
  const config = await loadConfig(configFile);
  const started = performance.now();
  let targetFirstSegmentAt: number | undefined;
  let firstPointAt: number | undefined;
  const result = await diagnose(config, {
    segmentRan: (role, segment) => {
      if (role === 'target' && segment === 0) targetFirstSegmentAt = performance.now();
    },
    point: () => {
      firstPointAt ??= performance.now();
    },
  });
  return {
    totalMs: performance.now() - started,
    peakRssMb: peakRssMb(),
    firstResultMs: (firstPointAt ?? NaN) - started,
    firstResultAfterSegmentMs: (firstPointAt ?? NaN) - (targetFirstSegmentAt ?? NaN),
    capture: result.runs.target.capture,
    segments: result.runs.target.segments,
    lockstep: result.timings.lockstep,
    topSuspect: result.suspects[0]?.module ?? null,
    referenceMs: result.timings.runsMs.reference ?? NaN,
    targetMs: result.timings.runsMs.target ?? NaN,
    moduleOutputs: result.series.length,
  };
}

async function activations(model: string, inputsFile: string): Promise<Record<string, number>> {
  const capture = await OnnxCapture.open({ model, optimization: 'all', executionProvider: 'cpu' });
  let total = 0;
  let largest = 0;
  for await (const records of capture.runSegments(await readInputFile(inputsFile))) {
    const bytes = records.reduce(
      (sum, r) =>
        sum +
        ((r.data as ArrayLike<number>).length ?? 0) * (r.data as Float32Array).BYTES_PER_ELEMENT,
      0,
    );
    total += bytes;
    largest = Math.max(largest, bytes);
  }
  await capture.release();
  return {
    totalMb: total / 2 ** 20,
    largestSegmentMb: largest / 2 ** 20,
    segments: capture.info.segments,
  };
}

function compare(megabytes: number): Record<string, number> {
  const count = Math.floor((megabytes * 2 ** 20) / 4);
  const a = new Float32Array(count);
  const b = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    a[i] = Math.sin(i);
    b[i] = a[i]! + 1e-4 * Math.cos(i);
  }
  comparePair(a.subarray(0, 1 << 20), b.subarray(0, 1 << 20)); // warm the JIT
  const started = performance.now();
  comparePair(a, b);
  const seconds = (performance.now() - started) / 1000;
  return { gbPerSecond: (2 * count * 4) / 1e9 / seconds, megabytesPerSide: megabytes };
}

async function main(): Promise<void> {
  const [kind, ...args] = process.argv.slice(2);
  let result: Record<string, unknown>;
  if (kind === 'plain') result = await plain(args[0]!, args[1]!);
  else if (kind === 'diagnose') result = await diagnoseFile(args[0]!);
  else if (kind === 'activations') result = await activations(args[0]!, args[1]!);
  else if (kind === 'compare') result = compare(Number(args[0]));
  else throw new Error(`unknown probe ${kind}`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

void main();
