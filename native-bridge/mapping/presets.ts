import type { MappingRule } from './mappingRule';

/**
 * Serving-engine (vLLM / SGLang naming) ↔ HuggingFace naming for decoder-only LLaMA-style models.
 * LLaMA, Qwen2, Mistral and Gemma share this layout in both: fused `qkv_proj` and `gate_up_proj`
 * in the engine, split projections in HF; the engine's fused add+RMSNorm returns
 * `(hidden, residual)` and its decoder layer returns `(mlp_out, residual)` where HF returns their
 * sum; the engine flattens tokens to `[num_tokens, hidden]`.
 */
const LLAMA_FAMILY: MappingRule[] = [
  {
    target: 'model.layers.{N}.self_attn.qkv_proj',
    reference: [
      'model.layers.{N}.self_attn.q_proj',
      'model.layers.{N}.self_attn.k_proj',
      'model.layers.{N}.self_attn.v_proj',
    ],
    referenceCombine: 'concat',
  },
  {
    target: 'model.layers.{N}.mlp.gate_up_proj',
    reference: ['model.layers.{N}.mlp.gate_proj', 'model.layers.{N}.mlp.up_proj'],
    referenceCombine: 'concat',
  },
  // The engine's SiluAndMul is silu(gate) · up of HF's two projections (HF's act_fn is silu alone).
  {
    target: 'model.layers.{N}.mlp.act_fn',
    reference: ['model.layers.{N}.mlp.gate_proj', 'model.layers.{N}.mlp.up_proj'],
    referenceCombine: 'silu-mul',
  },
  // Fused add+RMSNorm: item 0 is the norm, item 1 the residual stream after the add.
  { target: 'model.layers.{N}.input_layernorm:0', reference: 'model.layers.{N}.input_layernorm' },
  {
    target: 'model.layers.{N}.input_layernorm:1',
    reference: 'model.layers.{N-1}|model.embed_tokens',
  },
  {
    target: 'model.layers.{N}.post_attention_layernorm:0',
    reference: 'model.layers.{N}.post_attention_layernorm',
  },
  {
    target: 'model.layers.{N}.post_attention_layernorm:1',
    reference: ['model.layers.{N-1}|model.embed_tokens', 'model.layers.{N}.self_attn'],
    referenceCombine: 'sum',
  },
  {
    target: ['model.layers.{N}:0', 'model.layers.{N}:1'],
    targetCombine: 'sum',
    reference: 'model.layers.{N}',
  },
  { target: 'model.norm:0', reference: 'model.norm' },
  // The engine's attention backend returns what HF feeds o_proj (captured as o_proj's input).
  {
    target: 'model.layers.{N}.self_attn.attn',
    reference: 'model.layers.{N}.self_attn.o_proj:in.0',
  },
  {
    target: 'model.layers.{N}.self_attn.rotary_emb:*',
    reference: [],
    unmatchedReason:
      "the engine's rotary_emb returns rotated q and k, HF's returns cos and sin: compared through qkv and attention instead",
  },
  {
    target: 'model.norm:1',
    reference: [],
    unmatchedReason:
      "the residual stream after the last layer: compared as the last layer's output",
  },
];

export const PRESETS: Record<string, MappingRule[]> = {
  llama: LLAMA_FAMILY,
  qwen2: LLAMA_FAMILY,
  mistral: LLAMA_FAMILY,
  gemma: LLAMA_FAMILY,
};

export const PRESET_NAMES = Object.keys(PRESETS);
