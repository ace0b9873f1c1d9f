"""Target engine: layer 2's attention rotates GPT-J style pairs on a NeoX-style checkpoint."""

import torch

from modeling_llama import LlamaAttention, LlamaForCausalLM


def rotate_every_two(x):
    """GPT-J pairing (2i, 2i+1), written as a matmul: strided slices break the ONNX export."""
    dim = x.shape[-1]
    rotation = torch.zeros(dim, dim, dtype=x.dtype)
    for i in range(0, dim, 2):
        rotation[i + 1, i] = -1.0
        rotation[i, i + 1] = 1.0
    return torch.matmul(x, rotation)


class InterleavedRotaryAttention(LlamaAttention):
    def apply_rotary(self, query_states, key_states, cos, sin):
        cos = cos[:, None, :, :]
        sin = sin[:, None, :, :]
        query_states = query_states * cos + rotate_every_two(query_states) * sin
        key_states = key_states * cos + rotate_every_two(key_states) * sin
        return query_states, key_states


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[2].self_attn = InterleavedRotaryAttention(config, layer_idx=2)
