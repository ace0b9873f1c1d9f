import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { comparePair } from '../compare/metrics';
import { EkkaError } from '../errors';
import { largestInput } from '../localize/suspects';
import {
  alignPair,
  alignReferenceSide,
  checkPremise,
  planMapping,
  type PlannedPair,
} from '../mapping/mapRecords';
import { PRESETS } from '../mapping/presets';
import type { AlignedTensor } from '../mapping/transforms';
import { isGraftRecord, type CapturedRecord, type CapturedRun } from '../runners/capturedRecord';
import type { OnnxRunInfo } from '../runners/onnxRunner';
import type { FloatDType } from '../tensors/dtypes';
import type { CapturedDiagnosisConfig, CapturedRunConfig } from './capturedConfig';
import type { CaptureSource, GraftFiles } from './captureSource';
import { derivedLowPrecisionNote } from './config';
import { drillModule, opsByModule } from './drillDown';
import { finishDiagnosis, type SuspectDetail } from './finish';
import { graftOwnRatios } from './grafts';
import {
  lowPrecisionGap,
  measurePair,
  pairTypes,
  SeriesBuilder,
  type LowPrecisionGap,
} from './measure';
import type {
  DiagnosisObserver,
  DiagnosisResult,
  DrillDown,
  MappingReport,
  RunRole,
  SeriesPoint,
  UnmatchedRecord,
} from './result';

function runInfo(run: CapturedRunConfig, captured: CapturedRun): OnnxRunInfo {
  const model =
    run.kind === 'pytorch'
      ? `${run.factoryFile}:${run.factoryFunction}`
      : run.kind === 'dump'
        ? run.dump
        : run.options.model;
  return {
    framework: run.kind === 'onnx' ? 'onnxruntime' : run.kind,
    model,
    executionProvider: captured.info.device?.startsWith('cuda') ? 'cuda' : 'cpu',
    optimization: run.kind === 'onnx' ? run.options.optimization : 'disabled',
    precision: (captured.info.dtype ??
      (run.kind === 'pytorch' ? run.dtype : 'float32')) as OnnxRunInfo['precision'],
    capture: 'whole-graph',
    segments: 1,
    capturedValues: captured.records.length,
  };
}

/** Total reference tokens when target calls map to windows of one reference call. */
function referenceTokens(config: CapturedDiagnosisConfig): number | undefined {
  const windows = config.mapping.targetCallTokens;
  return windows ? Math.max(...windows.map(([, end]) => end)) : undefined;
}

/**
 * What a module's value is measured against: the largest ratio among the records it was computed
 * from (the capture helper lists them: the module's inputs and its children's outputs).
 */
function measuredInputs(
  targets: readonly CapturedRecord[],
  series: readonly SeriesPoint[],
  indexByTarget: ReadonlyMap<string, number>,
  consumedInputs: ReadonlyMap<string, number>,
): ReturnType<typeof largestInput> {
  return largestInput(
    series,
    targets.flatMap((target) =>
      (target.inputs ?? []).map(
        (name) =>
          consumedInputs.get(`${target.module}#${target.call}|${name}`) ?? indexByTarget.get(name),
      ),
    ),
  );
}

/**
 * For records that do not list their inputs (another tool's dump): the value compared last
 * before the module's own children, and those children's outputs (hooks report children first).
 */
function guessedInput(
  series: readonly SeriesPoint[],
  module: string,
): { inputIndex?: number; inputRatio: number } {
  let best: number | undefined;
  for (let i = series.length - 1; i >= 0; i--) {
    const earlier = series[i]!.module;
    const inside = earlier === module || earlier.startsWith(module ? `${module}.` : '');
    if (best === undefined || series[i]!.ratio > series[best]!.ratio) best = i;
    if (!inside) break;
  }
  return best === undefined
    ? { inputRatio: 1 }
    : { inputIndex: best, inputRatio: Math.max(1, series[best]!.ratio) };
}

/**
 * The front-end for captured runs (PyTorch captures, dumps, ONNX runs paired with either):
 * captures the runs side by side, pairs their records through the mapping and aligns each pair.
 * Sources come from each target record's class.
 */
export async function diagnoseCaptured(
  config: CapturedDiagnosisConfig,
  capture: CaptureSource,
  observer: DiagnosisObserver = {},
  signal?: AbortSignal,
): Promise<DiagnosisResult> {
  const started = performance.now();
  const throwIfCancelled = () => {
    if (signal?.aborted) throw new EkkaError('cancelled', 'diagnosis cancelled');
  };
  const runsMs: Partial<Record<string, number>> = {};
  // One failing capture stops the others (their helper processes are killed).
  const captures = new AbortController();
  const stopAll = () => captures.abort();
  signal?.addEventListener('abort', stopAll, { once: true });
  const take = async (run: CapturedRunConfig, role: RunRole, graft?: GraftFiles) => {
    const t = performance.now();
    const captured = await capture(run, role, captures.signal, graft).catch((cause: unknown) => {
      captures.abort();
      throw cause;
    });
    runsMs[role] = performance.now() - t;
    observer.runStarted?.(role, runInfo(run, captured));
    throwIfCancelled();
    return captured;
  };
  // The runs are independent processes (or files): captured side by side, except that grafts
  // need the reference's saved module arguments first.
  const graftFolder = drillsApply(config)
    ? await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-graft-'))
    : undefined;
  try {
    return await diagnoseWith(graftFolder && path.join(graftFolder, 'reference-inputs.pt'));
  } finally {
    signal?.removeEventListener('abort', stopAll);
    if (graftFolder) await fs.rm(graftFolder, { recursive: true, force: true });
  }

  async function diagnoseWith(graftFile: string | undefined): Promise<DiagnosisResult> {
    const [reference, lowPrecisionRun, targetRun] = await (async () => {
      const referenceRun = graftFile
        ? await take(config.reference, 'reference', { save: graftFile })
        : take(config.reference, 'reference');
      const from = graftFile && graftsApply(config) ? { from: graftFile } : undefined;
      return Promise.all([
        referenceRun,
        config.referenceLowPrecision
          ? take(config.referenceLowPrecision, 'referenceLowPrecision', from)
          : Promise.resolve(undefined),
        take(config.target, 'target', from),
      ]);
    })();
    const withoutGrafts = (run: CapturedRun): CapturedRun => ({
      ...run,
      records: run.records.filter((r) => !isGraftRecord(r)),
    });
    const target = withoutGrafts(targetRun);
    const lowPrecision = lowPrecisionRun && withoutGrafts(lowPrecisionRun);

    const presetRules =
      config.mapping.preset === 'none' ? [] : (PRESETS[config.mapping.preset] ?? []);
    const rules = [
      ...config.mapping.rules.map((rule, i) => ({ rule, origin: `rule ${i + 1} (ekka.json)` })),
      ...presetRules.map((rule) => ({
        rule,
        origin: `preset ${config.mapping.preset}`,
        checked: true,
      })),
    ];
    const plan = planMapping(target.records, reference.records, {
      rules,
      ignore: config.mapping.ignore,
      ...(config.mapping.targetCallTokens
        ? { targetCallTokens: config.mapping.targetCallTokens }
        : {}),
    });
    const targetByName = new Map(target.records.map((r) => [r.name, r]));
    const referenceByName = new Map(reference.records.map((r) => [r.name, r]));
    const lowByName = new Map(lowPrecision?.records.map((r) => [r.name, r]) ?? []);
    const tokens = referenceTokens(config);
    const tensor = (r: CapturedRecord): AlignedTensor => ({ data: r.data, shape: r.shape });

    const series = new SeriesBuilder(observer);
    const unmatched: UnmatchedRecord[] = plan.unmatched.map((u) => ({
      side: u.side,
      key: u.name,
      module: u.module,
      node: u.name,
      reason: u.reason,
    }));
    const mappingPairs: MappingReport['pairs'] = [];
    const floorFactor = config.thresholds.noiseFloorFactor;
    const targetPrecision = computePrecision(config.target);
    const ownRatios = lowPrecisionRun
      ? graftOwnRatios(
          targetRun.records,
          lowPrecisionRun.records,
          referenceByName,
          targetPrecision,
          floorFactor,
        )
      : new Map<string, number>();
    const relative = (file: string) =>
      path.relative(config.baseDir, file).split(path.sep).join('/');

    const classOf = new Map<string, CapturedRecord>();
    for (const record of target.records) {
      if (!record.output.startsWith('in.') && !classOf.has(record.module)) {
        classOf.set(record.module, record);
      }
    }
    const seriesIndexByTarget = new Map<string, number>();
    const consumedInputs = new Map<string, number>();
    const tracksInputs = target.records.some((r) => r.inputs !== undefined);
    const premiseNotes: string[] = [];
    for (const planned of plan.pairs) {
      throwIfCancelled();
      const targets = planned.target.map((name) => targetByName.get(name)!);
      const referencesOf = (p: PlannedPair) =>
        p.reference.map((name) => referenceByName.get(name)!);
      const { pair, note } = checkPremise(planned, (p) => {
        try {
          const fit = alignPair(p, targets.map(tensor), referencesOf(p).map(tensor), tokens);
          return comparePair(fit.target.data, fit.reference.data).relativeL2Error;
        } catch {
          return Infinity;
        }
      });
      if (note && pair.origin === 'same path') premiseNotes.push(pair.key);
      const references = referencesOf(pair);
      let aligned;
      try {
        aligned = alignPair(pair, targets.map(tensor), references.map(tensor), tokens);
        if (note) aligned.transforms.unshift(note);
      } catch (cause) {
        unmatched.push({
          side: 'target',
          key: pair.key,
          module: pair.module,
          node: pair.target.join(', '),
          reason: (cause as Error).message,
        });
        continue;
      }
      const first = targets[0]!;
      const types = pairTypes(first.dtype, references[0]!.dtype, targetPrecision);
      let gap: LowPrecisionGap | undefined;
      const lows = pair.reference.map((name) => lowByName.get(name));
      if (lows.every((r) => r !== undefined)) {
        try {
          // The low-precision reference goes through the same steps; the full one is aligned above
          // (a reshape keeps its values in order).
          const low = alignReferenceSide(pair, lows.map(tensor), tokens, []);
          if (low.data.length === aligned.reference.data.length) {
            gap = lowPrecisionGap(low.data, aligned.reference.data, types);
          }
        } catch {
          gap = undefined;
        }
      }
      const measured = measurePair(
        aligned.target.data,
        aligned.reference.data,
        types,
        gap,
        floorFactor,
      );
      // A module input belongs to the code that computed it: the calling module's class.
      const owner = pair.inputOf ? (classOf.get(pair.module) ?? first) : first;
      const inputs = tracksInputs
        ? measuredInputs(targets, series.points, seriesIndexByTarget, consumedInputs)
        : guessedInput(series.points, pair.module);
      if (pair.inputOf && !first.output.startsWith('in.')) {
        // A record the target passes where the reference computes its own value: what the consumer
        // reads, not the record's own point.
        consumedInputs.set(`${pair.inputOf}|${first.name}`, series.length);
      } else {
        for (const name of pair.target) seriesIndexByTarget.set(name, series.length);
      }
      const ownRatio =
        pair.target.length === 1 && !pair.inputOf ? ownRatios.get(pair.target[0]!) : undefined;
      series.add(
        {
          module: pair.module,
          call: pair.call,
          segment: 0,
          key: pair.key,
          node: pair.target.join(' + '),
          op: owner.className,
          dtype: first.dtype,
          shape: aligned.target.shape,
          ...inputs,
          ...(ownRatio !== undefined ? { ownRatio } : {}),
          ...(owner.source
            ? { source: { file: relative(owner.source.file), line: owner.source.line } }
            : {}),
        },
        measured,
        aligned.target.data,
        aligned.reference.data,
      );
      mappingPairs.push({
        key: pair.key,
        target: pair.target,
        reference: pair.reference,
        origin: pair.origin,
        transforms: aligned.transforms,
      });
    }

    if (series.length === 0) {
      throw new EkkaError(
        'input',
        `no target record could be paired with a reference record (${target.records.length} target, ${reference.records.length} reference records; see mapping rules)`,
        config.file,
      );
    }
    const warnings: string[] = [];
    if (config.derivedLowPrecision && config.referenceLowPrecision?.kind === 'pytorch') {
      warnings.push(derivedLowPrecisionNote(config.referenceLowPrecision.dtype));
    }
    if (premiseNotes.length > 0) {
      warnings.push(
        `preset ${config.mapping.preset}: ${premiseNotes.length} rules not applied where the target matches the reference's same-path module better (${premiseNotes.slice(0, 3).join(', ')}${premiseNotes.length > 3 ? ', …' : ''})`,
      );
    }
    if (!tracksInputs) {
      warnings.push(
        "the target's records do not say which values each module read: a module's input is taken as the value compared just before it (Ekka's PyTorch capture records the real inputs)",
      );
    }
    const unmatchedTargets = unmatched.filter((u) => u.side === 'target').length;
    if (unmatchedTargets > 0)
      warnings.push(`${unmatchedTargets} target values not compared (see unmatched)`);

    /** A suspect's source is the class its target record was made by. */
    const classSource = (module: string, point: SeriesPoint): SuspectDetail['source'] => {
      const record = classOf.get(module) ?? targetByName.get(point.node.split(' + ')[0]!)!;
      return record.source
        ? {
            file: relative(record.source.file),
            line: record.source.line,
            symbol: record.className,
            kind: 'class' as const,
          }
        : null;
    };
    const originOf = new Map(mappingPairs.map((p) => [p.key, p.origin]));
    const modules = [...new Set(target.records.map((r) => r.module))];
    const isLeaf = (module: string) =>
      module !== '' && !modules.some((m) => m.startsWith(`${module}.`));
    let drillMs: number | undefined;
    const refine = async (
      ranked: readonly { module: string; index: number }[],
      points: readonly SeriesPoint[],
      notes: string[],
    ): Promise<SuspectDetail[]> => {
      // Only modules paired by their own path run on the reference's arguments as they are. A
      // leaf's op is called from its parent's code: the parent is drilled, so the statement is
      // the line that calls the leaf.
      const drillOf = new Map<string, string>();
      for (const s of ranked.slice(0, DRILLED_SUSPECTS)) {
        const origin = originOf.get(points[s.index]!.key) ?? '';
        if (origin !== 'same path' && !origin.startsWith('input of ')) continue;
        drillOf.set(s.module, isLeaf(s.module) ? parentOf(s.module) : s.module);
      }
      const drilled = [...new Set(drillOf.values())];
      const drills =
        graftFile && drilled.length > 0
          ? await drillDown(graftFile, drilled, notes)
          : new Map<string, DrillDown>();
      return ranked.map((suspect) => {
        const point = points[suspect.index]!;
        const source = classSource(suspect.module, point);
        const drilledAs = drillOf.get(suspect.module);
        const drill = drilledAs === undefined ? undefined : drills.get(drilledAs);
        const op = drill?.first !== undefined ? drill.ops[drill.first]! : undefined;
        // A class the user wrote says more than a line of the code it inherits or is called from.
        const statement =
          op?.statement &&
          op.ratio !== undefined &&
          (!source || isLibraryFile(source.file) || source.file === op.statement.file)
            ? { ...op.statement, op: op.op, ratio: op.ratio }
            : undefined;
        return {
          ...(point.ownRatio !== undefined ? { ownRatio: point.ownRatio } : {}),
          source: statement
            ? {
                file: statement.file,
                line: statement.line,
                symbol: `${source?.symbol ?? suspect.module}: ${statement.op}`,
                kind: 'statement' as const,
              }
            : source,
          ...(drill ? { drillDown: drill } : {}),
          ...(statement ? { statement, moduleSource: source } : {}),
        };
      });
    };

    /** The drilled modules' ops in every run, on the reference's arguments (diagnosis/drillDown). */
    async function drillDown(
      file: string,
      modules: string[],
      notes: string[],
    ): Promise<Map<string, DrillDown>> {
      const t = performance.now();
      const drill = { from: file, drill: modules };
      const [ref, low, tgt] = await Promise.all([
        capture(config.reference, 'reference', captures.signal, drill),
        config.referenceLowPrecision
          ? capture(config.referenceLowPrecision, 'referenceLowPrecision', captures.signal, drill)
          : Promise.resolve(undefined),
        capture(config.target, 'target', captures.signal, drill),
      ]).catch((cause: unknown) => {
        captures.abort();
        if (cause instanceof EkkaError && cause.kind === 'cancelled') throw cause;
        throwIfCancelled();
        notes.push(`drill-down failed: ${(cause as Error).message}`);
        return [undefined, undefined, undefined];
      });
      drillMs = performance.now() - t;
      const result = new Map<string, DrillDown>();
      if (!ref || !tgt) return result;
      const [refOps, lowOps, targetOps] = [ref, low, tgt].map((run) =>
        opsByModule(run?.records ?? []),
      );
      for (const module of modules) {
        const target = targetOps!.get(module);
        const reference = refOps!.get(module);
        if (!target || !reference) continue;
        const lowPrecision = lowOps!.get(module);
        result.set(
          module,
          drillModule(
            module,
            { target, reference, ...(lowPrecision ? { lowPrecision } : {}) },
            {
              targetPrecision,
              floorFactor,
              bar: config.thresholds.localRatio,
              relative,
            },
          ),
        );
      }
      return result;
    }

    return finishDiagnosis(
      {
        thresholds: config.thresholds,
        baseDir: config.baseDir,
        ...(config.name ? { name: config.name } : {}),
        ...(config.file ? { file: config.file } : {}),
      },
      {
        started,
        series,
        unmatched,
        warnings,
        runs: {
          target: runInfo(config.target, target),
          reference: runInfo(config.reference, reference),
          ...(lowPrecision && config.referenceLowPrecision
            ? { referenceLowPrecision: runInfo(config.referenceLowPrecision, lowPrecision) }
            : {}),
        },
        mapping: { preset: config.mapping.preset, pairs: mappingPairs, unmatched },
        runsMs,
        lockstep: false,
      },
      refine,
    ).then((result) => {
      if (drillMs !== undefined) result.timings.drillMs = drillMs;
      return result;
    });
  }
}

/** An installed package's file (transformers, torch), not the user's code. */
function isLibraryFile(file: string): boolean {
  return /[\\/](site|dist)-packages[\\/]/.test(file);
}

/** `a.b.c` → `a.b`; a top-level module's parent is the root, ''. */
function parentOf(module: string): string {
  const dot = module.lastIndexOf('.');
  return dot < 0 ? '' : module.slice(0, dot);
}

/** Suspects drilled into, from the top (each costs one more call of the module in every run). */
const DRILLED_SUSPECTS = 3;

/**
 * The reference saves its modules' arguments (for grafts and drill-downs) where the target and
 * the reference are PyTorch captures.
 */
function drillsApply(config: CapturedDiagnosisConfig): boolean {
  return config.target.kind === 'pytorch' && config.reference.kind === 'pytorch';
}

/**
 * Grafts run where every side is a PyTorch capture with a low-precision reference (its graft is
 * the noise the target's graft is measured against).
 */
function graftsApply(config: CapturedDiagnosisConfig): boolean {
  return (
    config.target.kind === 'pytorch' &&
    config.reference.kind === 'pytorch' &&
    config.referenceLowPrecision?.kind === 'pytorch'
  );
}

/** The precision a target run computes in, where its configuration says (dumps do not). */
function computePrecision(run: CapturedRunConfig): FloatDType {
  if (run.kind === 'pytorch') return run.dtype;
  if (run.kind === 'onnx') return run.options.precision ?? 'float32';
  return 'float32';
}
