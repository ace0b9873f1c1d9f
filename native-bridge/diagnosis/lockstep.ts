import { EkkaError } from '../errors';
import type { ActivationRecord } from '../runners/activationRecord';
import type { InputTensor } from '../runners/inputFile';
import {
  OnnxCapture,
  type CaptureDetail,
  type OnnxRunInfo,
  type OnnxRunOptions,
} from '../runners/onnxRunner';
import { isFloatDType } from '../tensors/dtypes';
import type { RunRole } from './result';

export interface ScheduledRun {
  role: RunRole;
  options: OnnxRunOptions;
  /** Receives the run's float values and every boundary value, in execution order. */
  onRecord(record: ActivationRecord): void;
}

export interface Schedule {
  /** The runs' captures, still open for reruns of single segments; call `release()` when done. */
  captures: Map<RunRole, OnnxCapture>;
  release(): Promise<void>;
  infos: Partial<Record<RunRole, OnnxRunInfo>>;
  /** Time spent in each run (session building and running), in milliseconds. */
  ms: Partial<Record<RunRole, number>>;
  /** Whether the runs went segment by segment together (their segmentations matched). */
  lockstep: boolean;
}

/**
 * Runs the given runs — in order within each segment, segment by segment together when all runs
 * cut their graphs into the same layers — and calls `afterSegment` once a segment has gone through
 * every run, with the values each run carries to later segments: everything else may be dropped.
 * When the segmentations differ, each run goes through whole in turn and `afterSegment` is called
 * once at the end. The captures stay open (for reruns) until `release()`.
 */
export async function runSchedule(
  runs: readonly ScheduledRun[],
  inputs: readonly InputTensor[],
  hooks: {
    runStarted?(role: RunRole, info: OnnxRunInfo): void;
    /**
     * A segment has gone through every run; `live` holds, per run, the values later segments still
     * read. `final` after the last one (and after a whole run when runs go one after another).
     */
    afterSegment?(live: ReadonlyMap<RunRole, ReadonlySet<string>>, final: boolean): void;
    /** A run has just run its next segment (before its records are compared). */
    segmentRan?(role: RunRole, segment: number): void;
    signal?: AbortSignal;
    /** `modules`: partitioned runs return module outputs only (see OnnxCapture.runSegments). */
    detail?: CaptureDetail;
  } = {},
): Promise<Schedule> {
  const captures: OnnxCapture[] = [];
  const release = async () => {
    for (const capture of captures) await capture.release();
  };
  const schedule: Schedule = {
    captures: new Map(),
    release,
    infos: {},
    ms: {},
    lockstep: false,
  };
  try {
    for (const run of runs) {
      const started = performance.now();
      const capture = await OnnxCapture.open(run.options);
      captures.push(capture);
      schedule.captures.set(run.role, capture);
      schedule.infos[run.role] = capture.info;
      schedule.ms[run.role] = performance.now() - started;
      hooks.runStarted?.(run.role, capture.info);
    }
    const layouts = captures.map((c) => c.segmentKeys.join('|'));
    schedule.lockstep = layouts.every((layout) => layout === layouts[0]);
    const iterators = captures.map((c) => c.runSegments(inputs, hooks.detail));
    const segmentsRun = runs.map(() => 0);
    const step = async (i: number): Promise<boolean> => {
      const run = runs[i]!;
      const started = performance.now();
      const next = await iterators[i]!.next();
      schedule.ms[run.role] = (schedule.ms[run.role] ?? 0) + performance.now() - started;
      if (next.done) return false;
      hooks.segmentRan?.(run.role, segmentsRun[i]!++);
      for (const record of next.value) {
        if (hooks.signal?.aborted) throw new EkkaError('cancelled', 'diagnosis cancelled');
        if (isFloatDType(record.dtype) || record.boundaryKey) run.onRecord(record);
      }
      return true;
    };
    if (schedule.lockstep) {
      for (let k = 0; ; k++) {
        let advanced = false;
        for (let i = 0; i < runs.length; i++) advanced = (await step(i)) || advanced;
        if (!advanced) break;
        hooks.afterSegment?.(
          new Map(runs.map((run, i) => [run.role, captures[i]!.liveAfter(k)])),
          false,
        );
      }
    } else {
      for (let i = 0; i < runs.length; i++) while (await step(i));
    }
    hooks.afterSegment?.(new Map(runs.map((run) => [run.role, new Set<string>()])), true);
  } catch (cause) {
    await release();
    throw cause;
  }
  return schedule;
}
