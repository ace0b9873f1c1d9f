/**
 * The chart's x axis read by layer: points stay in execution order, the ticks sit where each
 * decoder layer starts, and each point's marker says what kind of module produced it.
 */

/** What a module does, from its path: drawn as the marker's symbol. */
export type ModuleKind = 'embedding' | 'attention' | 'mlp' | 'norm' | 'head' | 'layer' | 'other';

/** Marker symbols per kind (plotly names), and the words the hover and legend use. */
export const MODULE_KINDS: Record<ModuleKind, { symbol: string; label: string }> = {
  embedding: { symbol: 'square', label: 'embedding' },
  attention: { symbol: 'diamond', label: 'attention' },
  mlp: { symbol: 'triangle-up', label: 'MLP' },
  norm: { symbol: 'circle', label: 'norm' },
  head: { symbol: 'star', label: 'head' },
  layer: { symbol: 'hexagon', label: 'layer' },
  other: { symbol: 'cross', label: 'other' },
};

// Checked on the last path component first, then on the ones above it (q_proj inside self_attn).
const KIND_PATTERNS: [ModuleKind, RegExp][] = [
  ['norm', /norm|^ln(_|\d|$)|layer_?norm/i],
  ['embedding', /embed|^wte$|^wpe$|^tok_?embeddings$/i],
  ['head', /^lm_head$|^head$|^output$|^logits/i],
  ['attention', /attn|attention|^[qkvo]_?proj$|^qkv|^rotary|rope|^c_attn$/i],
  ['mlp', /mlp|ffn|feed_?forward|^gate|^up_proj$|^down_proj$|^act|expert|^fc\d*$|^w[123]$/i],
];

/** The decoder layer a module belongs to: the number after a container (`layers.3`, `h.3`). */
export function layerOf(module: string): number | undefined {
  const match = /(?:^|\.)(?:layers|layer|h|blocks|block|decoder_layers)\.(\d+)(?:\.|$)/.exec(
    module,
  );
  return match ? Number(match[1]) : undefined;
}

export function moduleKind(module: string): ModuleKind {
  const parts = module.split('.').filter((part) => part !== '' && !/^\d+$/.test(part));
  for (let k = parts.length - 1; k >= 0; k--) {
    for (const [kind, pattern] of KIND_PATTERNS) if (pattern.test(parts[k]!)) return kind;
  }
  // A layer's own output (`model.layers.3`): the path ends at the layer's number.
  return layerOf(module) !== undefined && /\.\d+$/.test(module) ? 'layer' : 'other';
}

export interface LayerTicks {
  /** Series indices where a tick goes; empty when no module path names a layer. */
  tickvals: number[];
  ticktext: string[];
}

/**
 * A tick at the first point of each layer (`L0`, `L1`, …), one at the first point before the
 * layers (`in`) and one at the first point after them (`out`). Points arrive in execution order,
 * so a partial series gives the ticks seen so far.
 */
export function layerTicks(series: readonly { index: number; module: string }[]): LayerTicks {
  const layers = series.map((point) => layerOf(point.module));
  let last = layers.length - 1;
  while (last >= 0 && layers[last] === undefined) last--;
  if (last < 0) return { tickvals: [], ticktext: [] };
  const tickvals: number[] = [];
  const ticktext: string[] = [];
  const tick = (position: number, text: string) => {
    tickvals.push(series[position]!.index);
    ticktext.push(text);
  };
  if (layers[0] === undefined) tick(0, 'in');
  const seen = new Set<number>();
  layers.forEach((layer, position) => {
    if (layer === undefined || seen.has(layer)) return;
    seen.add(layer);
    tick(position, `L${layer}`);
  });
  if (last + 1 < series.length) tick(last + 1, 'out');
  return { tickvals, ticktext };
}
