import type { NonFiniteCounts } from '../compare/metrics';
import type { NoiseSource } from '../compare/errorRatio';
import type { OnnxRunInfo } from '../runners/onnxRunner';
import type { Rewiring } from '../localize/rewiring';
import type { SuspectUnder } from '../localize/suspects';
import type { KernelLocation } from '../source/cppLocator';
import type { SourceLocation } from '../source/pythonLocator';
import type { FloatArray } from '../tensors/dtypes';

/** The runs of one diagnosis. */
export type RunRole = 'reference' | 'referenceLowPrecision' | 'target';

/** Callbacks for progress; `point` fires once per compared module output, as soon as it exists. */
export interface DiagnosisObserver {
  runStarted?(role: RunRole, info: OnnxRunInfo): void;
  /** A run has run its next segment; its comparisons follow. */
  segmentRan?(role: RunRole, segment: number): void;
  point?(point: SeriesPoint): void;
  /** With each point: the two values it compared (valid only during the call). */
  compared?(point: SeriesPoint, target: FloatArray, reference: FloatArray): void;
}

/** One compared module output, in the target's execution order. Streamed as soon as it exists. */
export interface SeriesPoint {
  index: number;
  /** Module that produced the value (the deepest scope of its node). */
  module: string;
  /** Which call of the module: 1, or 2 for a second call (a decode step after the prefill), ... */
  call: number;
  /** Index of the segment (layer) that produced it in a partitioned run. */
  segment: number;
  /** Alignment key shared by both runs: `${module}@out${k}`. */
  key: string;
  node: string;
  op: string;
  dtype: string;
  shape: number[];
  ratio: number;
  relativeL2Error: number;
  cosineSimilarity: number;
  maxAbsError: number;
  /** Multi-dimensional index of the largest absolute difference. */
  maxAbsErrorIndex: number[];
  noiseSource: NoiseSource;
  /**
   * Degrees of freedom of the measured noise (compare/errorRatio), where the low-precision gap is
   * the denominator: a ratio within its sampling band (localize/samplingBand) reads as noise.
   */
  noiseDof?: number;
  /** Largest ratio among the values entering this module from other modules (1 when none). */
  inputRatio: number;
  /** Series index of the input with the largest ratio, set whenever one is in the series. */
  inputIndex?: number;
  /** Series index of a decision (integer or boolean input: top-k indices) that differs between runs. */
  decisionInput?: number;
  /** Captured runs: where the module's class is defined (relative like a suspect's source). */
  source?: { file: string; line: number };
  /** Set when this module reads a different value than in the reference (see localize/rewiring). */
  rewired?: Rewiring;
  /** Set when a value this module reads has no counterpart in the reference: who produced it. */
  unpairedInput?: { module: string; key: string };
  /**
   * PyTorch runs, leaf modules' first calls: the ratio of the module run on the reference's inputs
   * in the target and in the low-precision reference (diagnosis/grafts): its own error.
   */
  ownRatio?: number;
  target: NonFiniteCounts;
  reference: NonFiniteCounts;
  nonFiniteMismatches: number;
  /** Elements outside atol = rtol = 1e-5 (Polygraphy's defaults), for tolerance-based checks. */
  toleranceViolations: number;
}

/** A captured value that could not be paired with the other run, and why. */
export interface UnmatchedRecord {
  side: 'target' | 'reference';
  key: string;
  module: string;
  node: string;
  reason: string;
}

/** One tensor op inside a drilled module (diagnosis/drillDown), in the target's call order. */
export interface DrillOp {
  /** The target's op record: `<module>#1/op.<k>`. */
  name: string;
  /** What the code called: `F.linear`, `Tensor.mul`, `torch.rsqrt`. */
  op: string;
  shape: number[];
  /** Against the reference's counterpart; absent when the op has none (a fused op's group). */
  ratio?: number;
  /** The reference's op record it was paired with. */
  reference?: string;
  /** The largest ratio among the earlier ops it read (1 when it read only arguments or weights). */
  inputRatio: number;
  /** The line of the model's code that called it, relative like a suspect's source. */
  statement: { file: string; line: number } | null;
}

/** A suspect module run again on the reference's arguments, op by op. */
export interface DrillDown {
  module: string;
  ops: DrillOp[];
  /**
   * Index in `ops` of the first op whose output diverges while the ops it read agree (or, when
   * none does, of the first that diverges: `inputsAgree` false). Absent when no op diverges.
   */
  first?: number;
  inputsAgree?: boolean;
  /**
   * The reference's ops without counterpart just before the first op's own counterpart: what the
   * reference computes there and the target leaves out, with the reference's line.
   */
  missing?: { op: string; statement: { file: string; line: number } | null }[];
  /** Reference ops that no target op was paired with. */
  unpairedReference: number;
}

export interface Suspect {
  rank: number;
  module: string;
  /** The first op inside the module whose own output is divergent, else the module's output op. */
  op: string;
  node: string;
  ratio: number;
  /**
   * ln(ratio / input ratio): the error this module adds on top of what it receives. Under the
   * analytic floor (ratio below the threshold) the unclamped ratio of its largest input is used.
   */
  ownJump: number;
  /**
   * `local`: its inputs are within noise and its output is not, so the error starts here;
   * `amplifier`: its inputs diverge already and it multiplies their error by the threshold again.
   */
  kind?: 'local' | 'amplifier';
  /**
   * A local divergence under the threshold: `threshold` when its ratio and the factor by which it
   * multiplies what it reads both reach `localRatio`, `analytic-floor` when it is a divergence the
   * analytic floor hides (see localize/suspects).
   */
  under?: SuspectUnder;
  /**
   * Its ratio when it runs on the reference's inputs: for the top suspect of a partitioned ONNX run,
   * its segment; for PyTorch runs, every leaf module (diagnosis/grafts). At or above the threshold,
   * the error starts here; below, it was inherited from an earlier one.
   */
  ownRatio?: number;
  confidence: number;
  /** Index of the module's output in the series. */
  index: number;
  /** File relative to the config's folder (or the source root). Null when no source was found. */
  source: SourceLocation | null;
  /**
   * The custom C++/CUDA kernel behind the module, files relative like `source`: an op of its module
   * in a custom ONNX domain, else the first custom-op call in its workspace forward that the
   * source folders define. Absent when there is none.
   */
  kernel?: KernelLocation;
  /**
   * PyTorch runs: the statement inside the module where its own error starts (drill-down), when
   * it was drilled and an op diverges. `source` then points at the statement, and `moduleSource`
   * keeps where the module's class is.
   */
  statement?: { file: string; line: number; op: string; ratio: number };
  moduleSource?: SourceLocation | null;
  drillDown?: DrillDown;
}

export interface DiagnosisResult {
  format: 'ekka-diagnosis';
  version: 1;
  name?: string;
  config?: string;
  /** The absolute folder that every `source` and `kernel` file in the result is relative to. */
  sourceBase?: string;
  runs: { target: OnnxRunInfo; reference: OnnxRunInfo; referenceLowPrecision?: OnnxRunInfo };
  noise: {
    source: 'low-precision-reference' | 'analytic-floor';
    floorFactor: number;
    floorDType: string;
  };
  thresholds: {
    ratio: number;
    /**
     * The faint bar: ratio and own factor, or a leaf's own ratio on a graft (localize/suspects).
     * Absent in results written before it was reported.
     */
    localRatio?: number;
    minRun: number;
    penaltyScale: number;
    lookback: number;
  };
  series: SeriesPoint[];
  changePoint: { index: number; module: string; ratio: number } | null;
  spikes: number[];
  suspects: Suspect[];
  unmatched: UnmatchedRecord[];
  /** Captured runs only: how target records were paired with reference records. */
  mapping?: MappingReport;
  /** Things the user should know that do not change the verdict. */
  warnings: string[];
  /** Ops compared one to one (beyond the module outputs), for the op inside each suspect. */
  comparedOps: number;
  /** Per run, the time spent building sessions and running; lockstep: runs went segment by segment together. */
  timings: {
    totalMs: number;
    runsMs: Partial<Record<string, number>>;
    lockstep: boolean;
    /** PyTorch runs: the drill-down's three helper runs, side by side (wall time). */
    drillMs?: number;
  };
}

/** Which target values were compared with which reference values, and how they were aligned. */
export interface MappingReport {
  preset: string;
  pairs: {
    key: string;
    target: string[];
    reference: string[];
    /** The rule that paired them: `rule 1 (ekka.json)`, `preset llama`, `same path`. */
    origin: string;
    /** Each alignment step applied before comparing (combine, permute, token window, reshape). */
    transforms: string[];
  }[];
  unmatched: UnmatchedRecord[];
}
