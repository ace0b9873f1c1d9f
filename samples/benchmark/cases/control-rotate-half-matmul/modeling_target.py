"""No bug: every layer computes NeoX rotate_half with a permutation matmul instead of slices."""

import torch

from modeling_llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM


def rotate_half_matmul(x):
    dim = x.shape[-1]
    half = dim // 2
    rotation = torch.zeros(dim, dim, dtype=x.dtype)
    for i in range(half):
        rotation[i + half, i] = -1.0
        rotation[i, i + half] = 1.0
    return torch.matmul(x, rotation)


class MatmulRotaryAttention(LlamaAttention):
    def apply_rotary(self, query_states, key_states, cos, sin):
        cos, sin = cos[:, None, :, :], sin[:, None, :, :]
        return (
            query_states * cos + rotate_half_matmul(query_states) * sin,
            key_states * cos + rotate_half_matmul(key_states) * sin,
        )


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        for idx in range(config.num_hidden_layers):
            self.model.layers[idx].self_attn = MatmulRotaryAttention(config, layer_idx=idx)


EXPECTED = {"module": None}
