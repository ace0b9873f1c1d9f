"""Layer 1 rounds attention logits to bfloat16 before the softmax (no fp32 upcast)."""

import torch

from modeling_llama import LlamaAttention, LlamaForCausalLM


class Bf16SoftmaxAttention(LlamaAttention):
    def attention_probs(self, attn_weights, attention_mask):
        rounded = attn_weights.to(torch.bfloat16).to(torch.float32)
        return torch.softmax(rounded + attention_mask, dim=-1)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[1].self_attn = Bf16SoftmaxAttention(config, layer_idx=1)


# Runs as an fp32 engine: a missing upcast is a bug of an fp32 engine.
EXPECTED = {"module": "model.layers.1.self_attn", "class": "Bf16SoftmaxAttention", "cause": "numerics/precision", "precision": "float32"}
