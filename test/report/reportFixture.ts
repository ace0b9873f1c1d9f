import type { Annotation } from '../../native-bridge/annotations/annotation';
import type { DiagnosisResult, SeriesPoint, Suspect } from '../../native-bridge/diagnosis/result';

/** A module name and a note that try to break out of every context a report puts them in. */
export const HOSTILE = '</script><img src=x onerror=alert(1)>';
export const HOSTILE_NOTE = `rope | pairs \`swapped\` ${HOSTILE}\n& second line \u2028 <!-- x`;

function point(index: number, module: string, ratio: number): SeriesPoint {
  return {
    index,
    module,
    call: 1,
    segment: 0,
    key: `${module}@out0`,
    node: `/${module.replace(/\./g, '/')}/MatMul`,
    op: 'MatMul',
    dtype: 'float32',
    shape: [1, 4, 8],
    ratio,
    relativeL2Error: ratio * 1e-6,
    cosineSimilarity: 1 - ratio * 1e-9,
    maxAbsError: ratio * 1e-5,
    maxAbsErrorIndex: [0, 1, index % 8],
    noiseSource: 'analytic-floor',
    inputRatio: 1,
    target: { nan: 0, inf: 0 },
    reference: { nan: 0, inf: 0 },
    nonFiniteMismatches: 0,
    toleranceViolations: 0,
  };
}

/**
 * A small result with a change point at #3 whose module name is hostile, three suspects, one
 * unmatched record and one warning.
 */
export function hostileResult(): DiagnosisResult {
  const modules = ['model.embed', 'model.layers.0.mlp', 'model.layers.0.attn', HOSTILE];
  const series = [
    point(0, modules[0]!, 0),
    point(1, modules[1]!, 0.5),
    point(2, modules[2]!, 1.2),
    point(3, modules[3]!, 250),
    point(4, 'model.layers.1.mlp|pipe`tick', 300),
    point(5, 'model.norm', 280),
  ];
  const suspect = (rank: number, p: SeriesPoint, confidence: number): Suspect => ({
    rank,
    module: p.module,
    op: p.op,
    node: p.node,
    ratio: p.ratio,
    ownJump: Math.log(p.ratio / p.inputRatio),
    confidence,
    index: p.index,
    source: { file: 'modeling.py', line: 10 + rank, symbol: 'Attn.forward', kind: 'forward' },
  });
  return {
    format: 'ekka-diagnosis',
    version: 1,
    name: `sample <b>bold</b> & "quoted"`,
    config: '/work/cases/hostile/ekka.json',
    runs: {
      target: {
        model: '/work/cases/hostile/target.onnx',
        executionProvider: 'cpu',
        optimization: 'all',
        precision: 'float32',
        capture: 'partitioned',
        segments: 2,
        capturedValues: 40,
      },
      reference: {
        model: '/work/cases/reference.onnx',
        executionProvider: 'cpu',
        optimization: 'disabled',
        precision: 'float32',
        capture: 'partitioned',
        segments: 2,
        capturedValues: 30,
      },
    },
    noise: { source: 'analytic-floor', floorFactor: 64, floorDType: 'float32' },
    thresholds: { ratio: 2, minRun: 3, penaltyScale: 2, lookback: 3 },
    series,
    changePoint: { index: 3, module: HOSTILE, ratio: 250 },
    spikes: [],
    suspects: [
      { ...suspect(1, series[3]!, 0.97), ownRatio: 240 },
      suspect(2, series[4]!, 0.02),
      suspect(3, series[5]!, 0.01),
    ],
    unmatched: [
      {
        side: 'target',
        key: 'model.extra@out0',
        module: 'model.extra',
        node: '/model/extra/Add',
        reason: `no reference record ${HOSTILE}`,
      },
    ],
    warnings: [`a warning with ${HOSTILE}`],
    comparedOps: 12,
    timings: { totalMs: 1234, runsMs: { target: 500, reference: 400 }, lockstep: true },
  };
}

export function hostileAnnotations(): Annotation[] {
  return [
    {
      id: 'a1',
      created: '2026-01-02T03:04:05.000Z',
      module: HOSTILE,
      op: 'MatMul',
      source: { file: 'modeling.py', line: 11 },
      location: 'model',
      cause: 'model/rope',
      note: HOSTILE_NOTE,
    },
    {
      id: 'a2',
      created: '2026-01-02T03:04:06.000Z',
      module: 'model.norm',
      location: 'precision',
      cause: 'numerics/precision',
      note: 'eps too small for bf16',
    },
  ];
}
