/**
 * Wiring differences: a module that reads a different value in the target than in the reference.
 *
 * Own-jump scoring trusts a module's inputs when their producers compare clean. That fails when the
 * target feeds the module a *different* value — a dropped residual hands the attention output to the
 * next norm, a swapped gate feeds the activation the up projection. The consumer then looks guilty
 * although its code is fine; the wiring lives in the lowest module that contains the consumer and
 * both producers. A differing producer key alone is not enough (graph exports share identical
 * values between modules freely), so the values themselves are compared.
 */

export interface WiredInput<T> {
  /** Series key of the value read (`module@outK`). */
  key: string;
  value: T;
}

export interface Rewiring {
  /** The lowest module containing the consumer and the producers involved. */
  module: string;
  /** Keys the target reads that differ from everything the reference reads instead. */
  target: string[];
  /** Keys the reference reads that the target does not. */
  reference: string[];
}

/** The longest common dotted prefix: lowestCommonModule(['a.b.c', 'a.b.d']) === 'a.b'. */
export function lowestCommonModule(modules: readonly string[]): string {
  if (modules.length === 0) return '';
  const split = modules.map((m) => (m ? m.split('.') : []));
  const common: string[] = [];
  for (let i = 0; i < split[0]!.length; i++) {
    const segment = split[0]![i];
    if (!split.every((parts) => parts[i] === segment)) break;
    common.push(segment!);
  }
  return common.join('.');
}

export const moduleOfKey = (key: string): string => key.slice(0, key.lastIndexOf('@'));

/**
 * Compares what `consumer` reads in both runs. Inputs with the same key are the same wiring. A
 * target-only input equal (by `sameValue`) to some reference-only input is the same value reached
 * another way. Anything left over is a rewiring.
 */
export function findRewiring<T>(
  consumer: string,
  targetInputs: readonly WiredInput<T>[],
  referenceInputs: readonly WiredInput<T>[],
  sameValue: (target: T, reference: T) => boolean,
): Rewiring | undefined {
  const referenceKeys = new Set(referenceInputs.map((i) => i.key));
  const targetKeys = new Set(targetInputs.map((i) => i.key));
  const targetOnly = targetInputs.filter((i) => !referenceKeys.has(i.key));
  const referenceOnly = referenceInputs.filter((i) => !targetKeys.has(i.key));
  const explained = new Set<string>();
  const differing = targetOnly.filter((t) => {
    const twin = referenceOnly.find((r) => !explained.has(r.key) && sameValue(t.value, r.value));
    if (twin) explained.add(twin.key);
    return !twin;
  });
  const missing = referenceOnly.filter((r) => !explained.has(r.key));
  if (differing.length === 0) return undefined;
  const keys = [...differing.map((i) => i.key), ...missing.map((i) => i.key)];
  return {
    module: lowestCommonModule([consumer, ...keys.map(moduleOfKey)]),
    target: differing.map((i) => i.key),
    reference: missing.map((i) => i.key),
  };
}
