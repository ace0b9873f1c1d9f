import type { CapturedRecord } from '../runners/capturedRecord';
import type { Combine, MappingRule } from './mappingRule';
import { alternatives, matchPattern, substitute, type PathRef } from './pathPattern';
import { combine, permute, sliceAxis, squeezed, tokenAxis, type AlignedTensor } from './transforms';

/** What the mapping reads of a record: everything but the values. */
export type RecordMeta = Omit<CapturedRecord, 'data'>;

export interface MappingOptions {
  /** User rules first, then the preset's. */
  rules: { rule: MappingRule; origin: string }[];
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
  /** Which rule paired them: `rule 1 (ekka.json)`, `preset llama`, `same path`. */
  origin: string;
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

  const pairs: PlannedPair[] = [];
  const unmatched: UnmatchedCapture[] = [];
  const consumed = new Set<string>();
  const usedReference = new Set<string>();

  for (const record of target) {
    if (consumed.has(record.name)) continue;
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
    for (const { rule, origin } of options.rules) {
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
      for (const t of targets) consumed.add(t.name);
      break;
    }
    if (!planned && tried.includes('no counterpart')) continue;
    if (!planned) {
      const candidates =
        referenceByCanonical.get(
          refKey(canonicalModulePath(record.module), record.output, referenceCall(record.call)),
        ) ?? [];
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
    for (const name of planned.reference) usedReference.add(name);
    pairs.push(planned);
  }
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
