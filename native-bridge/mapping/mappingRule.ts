/** One explicit pairing; user rules (ekka.json `mapping.rules`) are tried before the preset's. */
export interface MappingRule {
  /** Pattern(s) of the target side (see pathPattern.ts); the first decides whether the rule applies. */
  target: string | string[];
  reference: string | string[];
  /**
   * How several records of a side become one tensor: concatenated on the last axis, summed, or
   * silu(first) · second (a fused SiluAndMul against separate gate and up projections).
   */
  targetCombine?: Combine;
  referenceCombine?: Combine;
  /**
   * Set when the target value has no counterpart in the reference on purpose: the record is listed
   * unmatched with this reason (the rule's `reference` is then ignored).
   */
  unmatchedReason?: string;
  /** Axes order applied to the reference after combining (head layouts). */
  referencePermute?: number[];
}

export type Combine = 'concat' | 'sum' | 'silu-mul';
