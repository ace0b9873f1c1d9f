import type { CapturedRecord } from '../runners/capturedRecord';
import type { Combine, MappingRule } from './mappingRule';
import { alternatives, matchPattern, substitute, type PathRef } from './pathPattern';
import { combine, permute, sliceAxis, squeezed, tokenAxis, type AlignedTensor } from './transforms';

/** What the mapping reads of a record: everything but the values. */
export type RecordMeta = Omit<CapturedRecord, 'data'>;

export interface MappingOptions {
  /**
   * User rules first, then the preset's. A rule marked `checked` (a preset's) is a guess about how
   * the two implementations differ: where a same-path counterpart exists too, the pair carries it
   * as `alternative`, and the values decide (checkPremise).
   */
  rules: { rule: MappingRule; origin: string; checked?: boolean }[];
  /** Target module patterns left out on purpose. */
  ignore?: string[];
  /**
   * When the reference runs all tokens in one call and the target in several (a prefill, then
   * decode steps): the reference tokens [start, end) that target call k + 1 computes.
   */
  targetCallTokens?: [number, number][];
}

/** A target value paired with its reference, and how they are brought to one layout. */
export interface PlannedPair {
  /** `${module}#${call}` plus `:${output}` when not the plain output. */
  key: string;
  module: string;
  call: number;
  target: string[];
  targetCombine?: Combine;
  reference: string[];
  referenceCombine?: Combine;
  referencePermute?: number[];
  /** Reference token window for this target call. */
  tokens?: [number, number];
  /** Which rule paired them: `rule 1 (ekka.json)`, `preset llama`, `same path`, `input of …`. */
  origin: string;
  /** For a module input: the consuming module's call, `${module}#${call}`. */
  inputOf?: string;
  /** A same-path counterpart of a preset rule's pair: whichever fits the target better is used. */
  alternative?: { reference: string[] };
}

export interface UnmatchedCapture {
  side: 'target' | 'reference';
  name: string;
  module: string;
  reason: string;
}

export interface MappingPlan {
  pairs: PlannedPair[];
  unmatched: UnmatchedCapture[];
}

/** Container names of other families, rewritten to `model.layers.N` for same-path pairing. */
const CANONICAL: [RegExp, string][] = [
  [/^(?:language_model\.model|transformer|gpt_neox|model\.decoder)\./, 'model.'],
  [/^model\.(?:h|blocks)\.(\d+)/, 'model.layers.$1'],
  [/\.(?:attention|attn)$/, '.self_attn'],
];

export function canonicalModulePath(module: string): string {
  let path = module;
  for (const [pattern, replacement] of CANONICAL) path = path.replace(pattern, replacement);
  return path;
}

const outputKey = (output: string) => (output === '0' ? '' : output);
const refKey = (module: string, output: string, call: number) =>
  `${module}|${outputKey(output)}|${call}`;

function asList(value: string | string[]): string[] {
  return Array.isArray(value) ? value : [value];
}

/**
 * Pairs target records with reference records: explicit rules first (user, then preset), then the
 * same canonical path. Every record left over is listed with the reason.
 */
export function planMapping(
  target: readonly RecordMeta[],
  reference: readonly RecordMeta[],
  options: MappingOptions,
): MappingPlan {
  const referenceIndex = new Map<string, RecordMeta[]>();
  for (const record of reference) {
    const key = refKey(record.module, record.output, record.call);
    referenceIndex.set(key, [...(referenceIndex.get(key) ?? []), record]);
    if (record.output === '0' && !referenceIndex.has(refKey(record.module, '', record.call))) {
      referenceIndex.set(refKey(record.module, '', record.call), [record]);
    }
  }
  const referenceByCanonical = new Map<string, RecordMeta[]>();
  for (const record of reference) {
    const key = refKey(canonicalModulePath(record.module), record.output, record.call);
    referenceByCanonical.set(key, [...(referenceByCanonical.get(key) ?? []), record]);
  }
  const targetIndex = new Map(target.map((r) => [refKey(r.module, r.output, r.call), r] as const));
  const calls = options.targetCallTokens;
  const referenceCall = (call: number) => (calls ? 1 : call);
  const tokensFor = (call: number) => calls?.[call - 1];

  const findReference = (ref: PathRef, call: number) =>
    referenceIndex.get(refKey(ref.module, ref.output, referenceCall(call)))?.[0];

  const canonicalCounterpart = (record: RecordMeta) =>
    referenceByCanonical.get(
      refKey(canonicalModulePath(record.module), record.output, referenceCall(record.call)),
    ) ?? [];

  const pairs: PlannedPair[] = [];
  const unmatched: UnmatchedCapture[] = [];
  const consumed = new Set<string>();
  const usedReference = new Set<string>();

  // Module inputs (`in.*`) are not outputs of their own: they are paired after the outputs, with
  // the input of the module's counterpart.
  const inputs: RecordMeta[] = [];
  for (const record of target) {
    if (consumed.has(record.name)) continue;
    if (record.output.startsWith('in.')) {
      inputs.push(record);
      continue;
    }
    const ref: PathRef = { module: record.module, output: record.output };
    if (
      options.ignore?.some(
        (pattern) => matchPattern(pattern, ref) || matchPattern(`${pattern}:${record.output}`, ref),
      )
    ) {
      unmatched.push({
        side: 'target',
        name: record.name,
        module: record.module,
        reason: 'ignored by mapping.ignore',
      });
      continue;
    }
    const shard = /\.shards\.(\d+)(?:\.|$)/.exec(record.module);
    if (shard) {
      unmatched.push({
        side: 'target',
        name: record.name,
        module: record.module,
        reason: `tensor-parallel shard ${shard[1]}: compared through its parallel layer's output, gathered or summed over the shards (${record.module.slice(0, shard.index)})`,
      });
      continue;
    }
    if (calls && record.call > calls.length) {
      unmatched.push({
        side: 'target',
        name: record.name,
        module: record.module,
        reason: `call ${record.call} has no token window in mapping.targetCallTokens`,
      });
      continue;
    }
    const tried: string[] = [];
    let planned: PlannedPair | undefined;
    for (const { rule, origin, checked } of options.rules) {
      const [first, ...others] = asList(rule.target);
      const bindings = matchPattern(first!, ref);
      if (!bindings) continue;
      if (rule.unmatchedReason) {
        unmatched.push({
          side: 'target',
          name: record.name,
          module: record.module,
          reason: rule.unmatchedReason,
        });
        planned = undefined;
        tried.push('no counterpart');
        break;
      }
      const targets: RecordMeta[] = [record];
      let missing: string | undefined;
      for (const pattern of others) {
        const path = substitute(pattern, bindings);
        const other = path && targetIndex.get(refKey(path.module, path.output, record.call));
        if (!other) {
          missing = `target ${pattern}`;
          break;
        }
        targets.push(other);
      }
      const references: RecordMeta[] = [];
      for (const pattern of missing ? [] : asList(rule.reference)) {
        let found: RecordMeta | undefined;
        for (const alternative of alternatives(pattern)) {
          const path = substitute(alternative, bindings);
          found = path && findReference(path, record.call);
          if (found) break;
        }
        if (!found) {
          missing = `reference ${pattern}`;
          break;
        }
        references.push(found);
      }
      if (missing) {
        tried.push(`${origin}: no ${missing}`);
        continue;
      }
      planned = {
        key: pairKey(record),
        module: record.module,
        call: record.call,
        target: targets.map((t) => t.name),
        ...(rule.targetCombine && targets.length > 1 ? { targetCombine: rule.targetCombine } : {}),
        reference: references.map((r) => r.name),
        ...(rule.referenceCombine && references.length > 1
          ? { referenceCombine: rule.referenceCombine }
          : {}),
        ...(rule.referencePermute ? { referencePermute: rule.referencePermute } : {}),
        origin,
      };
      const samePath = checked && targets.length === 1 ? canonicalCounterpart(record) : [];
      if (samePath.length === 1 && !planned.reference.includes(samePath[0]!.name)) {
        planned.alternative = { reference: [samePath[0]!.name] };
      }
      for (const t of targets) consumed.add(t.name);
      break;
    }
    if (!planned && tried.includes('no counterpart')) continue;
    if (!planned) {
      const candidates = canonicalCounterpart(record);
      if (candidates.length === 1) {
        planned = {
          key: pairKey(record),
          module: record.module,
          call: record.call,
          target: [record.name],
          reference: [candidates[0]!.name],
          origin: 'same path',
        };
      } else {
        const why =
          candidates.length > 1
            ? `ambiguous: ${candidates.map((c) => c.name).join(', ')} all have this path`
            : `no reference record for ${record.module || '(root)'}${record.output ? `:${record.output}` : ''} (call ${referenceCall(record.call)})`;
        unmatched.push({
          side: 'target',
          name: record.name,
          module: record.module,
          reason: tried.length ? `${why}; ${tried.join('; ')}` : why,
        });
        continue;
      }
    }
    const window = tokensFor(record.call);
    if (window) planned.tokens = window;
    for (const name of [...planned.reference, ...(planned.alternative?.reference ?? [])]) {
      usedReference.add(name);
    }
    pairs.push(planned);
  }
  pairs.push(...planInputs(inputs, pairs, target, reference, usedReference));
  const seqOf = new Map(target.map((r) => [r.name, r.seq] as const));
  pairs.sort((a, b) => seqOf.get(a.target[0]!)! - seqOf.get(b.target[0]!)!);
  for (const record of reference) {
    // Module inputs are captured only as candidates for rules (an engine module computing what HF
    // passes between modules); an input no rule used is not a missing counterpart.
    if (!usedReference.has(record.name) && !record.output.startsWith('in.')) {
      unmatched.push({
        side: 'reference',
        name: record.name,
        module: record.module,
        reason: 'no target record maps to it',
      });
    }
  }
  return { pairs, unmatched };
}

/**
 * Pairs each module input with the same input of the counterpart module (the reference module
 * that X's output is paired with). An input is a record of its own (`X#c/in.K`) when no module
 * returned it, else the record it is (`arguments`); either side may be either. The point belongs
 * to the module whose code computed the value (the caller), which is how a divergence in a
 * parent's own ops (a residual add, a mask) is seen.
 */
function planInputs(
  inputs: readonly RecordMeta[],
  pairs: readonly PlannedPair[],
  target: readonly RecordMeta[],
  reference: readonly RecordMeta[],
  usedReference: Set<string>,
): PlannedPair[] {
  const referenceByName = new Map(reference.map((r) => [r.name, r] as const));
  const targetByName = new Map(target.map((r) => [r.name, r] as const));
  const referenceInputs = new Map<string, RecordMeta[]>();
  for (const record of reference) {
    if (!record.output.startsWith('in.')) continue;
    const key = `${record.module}#${record.call}`;
    referenceInputs.set(key, [...(referenceInputs.get(key) ?? []), record]);
  }
  // Inputs correspond by position or keyword only between calls of the same module class paired
  // by path: another implementation may split the work differently (a fused add + norm takes the
  // value before the add).
  const counterpart = new Map<string, PlannedPair>();
  for (const pair of pairs) {
    const key = `${pair.module}#${pair.call}`;
    const t = targetByName.get(pair.target[0]!);
    const r = pair.reference.length === 1 ? referenceByName.get(pair.reference[0]!) : undefined;
    if (!counterpart.has(key) && pair.origin === 'same path' && r && t?.className === r.className) {
      counterpart.set(key, pair);
    }
  }
  const parentOf = (module: string) => module.slice(0, Math.max(0, module.lastIndexOf('.')));
  const planned: PlannedPair[] = [];
  const add = (consumer: string, pair: PlannedPair, t: string, r: RecordMeta, caller?: string) => {
    usedReference.add(r.name);
    const module = consumer.slice(0, consumer.lastIndexOf('#'));
    const input = r.output.startsWith('in.') ? r.output : t.slice(t.lastIndexOf('/') + 1);
    planned.push({
      key: `${consumer}:${input}`,
      module: caller ?? r.caller ?? parentOf(module),
      call: pair.call,
      target: [t],
      reference: [r.name],
      ...(pair.tokens ? { tokens: pair.tokens } : {}),
      origin: `input of ${module || '(root)'}`,
      inputOf: consumer,
    });
  };
  const paired = new Set<string>();
  for (const record of inputs) {
    const consumer = `${record.module}#${record.call}`;
    const pair = counterpart.get(consumer);
    const other = pair && referenceByName.get(pair.reference[0]!);
    if (!pair || !other) continue;
    const path = record.output.slice('in.'.length);
    // Captured although it is another record (every input was asked for): that record's own pair
    // covers it, unless the reference computes the value itself (below).
    if (targetByName.get(pair.target[0]!)?.arguments?.[path]) continue;
    const input =
      referenceInputs
        .get(`${other.module}#${other.call}`)
        ?.find((r) => r.output === record.output) ??
      referenceByName.get(other.arguments?.[path] ?? '');
    if (!input) continue;
    paired.add(input.name);
    add(consumer, pair, record.name, input, record.caller);
  }
  // The target passes a record where the reference computes a value of its own (a residual add
  // the target left out): compare the record the target passes with the reference's value.
  for (const [consumer, pair] of counterpart) {
    const other = referenceByName.get(pair.reference[0]!);
    const passed = targetByName.get(pair.target[0]!)?.arguments;
    if (!other || !passed) continue;
    for (const input of referenceInputs.get(`${other.module}#${other.call}`) ?? []) {
      const path = input.output.slice('in.'.length);
      const known = passed[path];
      if (known && !other.arguments?.[path] && !paired.has(input.name)) {
        add(consumer, pair, known, input);
      }
    }
  }
  return planned;
}

/**
 * Settles a preset rule's pair that also has a same-path counterpart: the rule's premise (the two
 * implementations differ there) holds when the rule's reference fits the target at least as well
 * as the same-path one. `fit` returns the relative error of a pair (Infinity when it cannot be
 * aligned).
 */
export function checkPremise(
  pair: PlannedPair,
  fit: (pair: PlannedPair) => number,
): { pair: PlannedPair; note?: string } {
  const alternative = pair.alternative;
  if (!alternative) return { pair };
  const samePath: PlannedPair = {
    key: pair.key,
    module: pair.module,
    call: pair.call,
    target: pair.target,
    reference: alternative.reference,
    ...(pair.tokens ? { tokens: pair.tokens } : {}),
    origin: 'same path',
  };
  const viaRule = fit(pair);
  const direct = fit(samePath);
  const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toPrecision(3)} %` : 'no fit');
  if (direct < viaRule) {
    return {
      pair: samePath,
      note: `${pair.origin} not applied: the target fits its same-path counterpart (relative error ${pct(direct)}) better than the rule's (${pct(viaRule)})`,
    };
  }
  const kept = { ...pair };
  delete kept.alternative;
  return {
    pair: kept,
    note: `${pair.origin} applied: relative error ${pct(viaRule)} against ${pct(direct)} for the same-path counterpart`,
  };
}

function pairKey(record: RecordMeta): string {
  const output = outputKey(record.output);
  return `${record.module}#${record.call}${output ? `:${output}` : ''}`;
}

/**
 * The reference side of a pair (from one reference run) combined, permuted and cut to the target
 * call's tokens, each step recorded in `transforms`. Throws when the tokens have no axis.
 */
export function alignReferenceSide(
  pair: PlannedPair,
  references: readonly AlignedTensor[],
  referenceTokens: number | undefined,
  transforms: string[],
): AlignedTensor {
  let reference = combine(references, pair.referenceCombine ?? 'concat');
  if (references.length > 1) {
    transforms.push(
      `reference: ${pair.referenceCombine ?? 'concat'} of ${pair.reference.join(', ')}`,
    );
  }
  if (pair.referencePermute) {
    reference = permute(reference, pair.referencePermute);
    transforms.push(`reference: permute [${pair.referencePermute.join(', ')}]`);
  }
  if (pair.tokens && referenceTokens !== undefined) {
    const axis = tokenAxis(reference.shape, referenceTokens);
    if (axis === undefined) {
      throw new Error(
        `reference [${reference.shape.join(', ')}] has no token axis of ${referenceTokens}`,
      );
    }
    const [start, end] = pair.tokens;
    if (!(start === 0 && end === referenceTokens)) {
      reference = sliceAxis(reference, axis, start, end);
      transforms.push(`reference: tokens ${start}:${end} (target call ${pair.call})`);
    }
  }
  return reference;
}

/**
 * Brings a planned pair's values to one layout, recording each step: combine, permute, token
 * window, reshape. Throws with the reason when the shapes cannot be reconciled.
 */
export function alignPair(
  pair: PlannedPair,
  targets: readonly AlignedTensor[],
  references: readonly AlignedTensor[],
  referenceTokens: number | undefined,
): { target: AlignedTensor; reference: AlignedTensor; transforms: string[] } {
  const transforms: string[] = [];
  const target = combine(targets, pair.targetCombine ?? 'concat');
  if (targets.length > 1)
    transforms.push(`target: ${pair.targetCombine ?? 'concat'} of ${pair.target.join(', ')}`);
  let reference = alignReferenceSide(pair, references, referenceTokens, transforms);
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
  if (!same(target.shape, reference.shape)) {
    const flat = same(squeezed(target.shape), squeezed(reference.shape));
    const sameCount = target.data.length === reference.data.length;
    const lastT = target.shape[target.shape.length - 1];
    const lastR = reference.shape[reference.shape.length - 1];
    if (!flat && !(sameCount && lastT === lastR)) {
      throw new Error(
        `shapes differ after alignment: target [${target.shape.join(', ')}], reference [${reference.shape.join(', ')}]`,
      );
    }
    transforms.push(
      `reference: reshape [${reference.shape.join(', ')}] → [${target.shape.join(', ')}]`,
    );
    reference = { data: reference.data, shape: [...target.shape] };
  }
  return { target, reference, transforms };
}
