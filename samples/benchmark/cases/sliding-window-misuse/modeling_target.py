"""A 4-token sliding window meant for other layers is applied to layer 1 as well."""

import torch

from modeling_llama import LlamaAttention, LlamaForCausalLM


class SlidingWindowAttention(LlamaAttention):
    window = 4

    def attention_probs(self, attn_weights, attention_mask):
        positions = torch.arange(attn_weights.shape[-1])
        too_far = positions[None, :] < positions[:, None] - (self.window - 1)
        window_mask = too_far.to(attn_weights.dtype) * torch.finfo(attn_weights.dtype).min
        return torch.softmax(attn_weights + attention_mask + window_mask, dim=-1)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[1].self_attn = SlidingWindowAttention(config, layer_idx=1)


EXPECTED = {"module": "model.layers.1.self_attn", "class": "SlidingWindowAttention", "cause": "model/attention"}
