"""Layer 2 rotates GPT-J pairs (2i, 2i+1) on a checkpoint trained with NeoX pairing (i, i + d/2)."""

import torch

from modeling_llama import LlamaAttention, LlamaForCausalLM


def rotate_every_two(x):
    dim = x.shape[-1]
    rotation = torch.zeros(dim, dim, dtype=x.dtype)
    for i in range(0, dim, 2):
        rotation[i + 1, i] = -1.0
        rotation[i, i + 1] = 1.0
    return torch.matmul(x, rotation)


class GptjRotaryAttention(LlamaAttention):
    def apply_rotary(self, query_states, key_states, cos, sin):
        cos, sin = cos[:, None, :, :], sin[:, None, :, :]
        return (
            query_states * cos + rotate_every_two(query_states) * sin,
            key_states * cos + rotate_every_two(key_states) * sin,
        )


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[2].self_attn = GptjRotaryAttention(config, layer_idx=2)


EXPECTED = {"module": "model.layers.2.self_attn", "class": "GptjRotaryAttention", "cause": "model/rope"}
