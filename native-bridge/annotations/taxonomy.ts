/**
 * Root-cause categories a developer picks when annotating a suspect (shared/TAXONOMY.md): where a
 * silent error lives, and the stable cause ids.
 */
export const ROOT_CAUSE_LOCATIONS = ['framework', 'model', 'kernel', 'precision'] as const;
export type RootCauseLocation = (typeof ROOT_CAUSE_LOCATIONS)[number];

export interface RootCause {
  id: string;
  /** The usual location; `other` fits any. */
  location: RootCauseLocation | 'any';
  summary: string;
}

export const ROOT_CAUSES: readonly RootCause[] = [
  { id: 'model/rope', location: 'model', summary: 'rotary embedding pairing, theta, scaling' },
  { id: 'model/norm', location: 'model', summary: 'normalization epsilon, weight offset, upcast' },
  { id: 'model/attention', location: 'model', summary: 'softmax scale, mask, window, GQA' },
  { id: 'model/activation', location: 'model', summary: 'activation or gate/up order' },
  { id: 'model/residual', location: 'model', summary: 'residual wiring, fused add+norm stream' },
  { id: 'model/weights', location: 'framework', summary: 'weight loading, layout, TP shard' },
  { id: 'model/config', location: 'framework', summary: 'hyperparameter parsing' },
  { id: 'numerics/precision', location: 'precision', summary: 'overflow, underflow, upcast' },
  { id: 'numerics/quantization', location: 'kernel', summary: 'scales, zero points, groups' },
  { id: 'kernel/implementation', location: 'kernel', summary: 'indexing, bounds, tiling, race' },
  { id: 'kernel/fusion', location: 'kernel', summary: 'fused op differs from unfused' },
  { id: 'runtime/kv-cache', location: 'framework', summary: 'decode positions, block tables' },
  { id: 'runtime/batching', location: 'framework', summary: 'padding, chunked prefill, order' },
  { id: 'runtime/parallelism', location: 'framework', summary: 'TP/PP split, gather, all-reduce' },
  { id: 'runtime/graph-capture', location: 'framework', summary: 'CUDA graphs, stale buffers' },
  { id: 'runtime/sampling', location: 'framework', summary: 'logits processing' },
  { id: 'env/platform', location: 'kernel', summary: 'hardware or library version' },
  { id: 'other', location: 'any', summary: 'none of the above; say what in the note' },
];

export const ROOT_CAUSE_IDS: readonly string[] = ROOT_CAUSES.map((cause) => cause.id);

export function isRootCauseId(id: string): boolean {
  return ROOT_CAUSE_IDS.includes(id);
}
