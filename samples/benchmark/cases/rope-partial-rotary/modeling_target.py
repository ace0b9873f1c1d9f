"""Layer 1 applies a partial-rotary kernel (only the first half of each head rotated) to a full-rotary model."""

import torch

from modeling_llama import LlamaAttention, LlamaForCausalLM, apply_rotary_pos_emb


class PartialRotaryAttention(LlamaAttention):
    def apply_rotary(self, query_states, key_states, cos, sin):
        rot = self.head_dim // 2
        q_rot, q_pass = query_states[..., :rot], query_states[..., rot:]
        k_rot, k_pass = key_states[..., :rot], key_states[..., rot:]
        half = rot // 2
        cos = torch.cat((cos[..., :half], cos[..., :half]), dim=-1)
        sin = torch.cat((sin[..., :half], sin[..., :half]), dim=-1)
        q_rot, k_rot = apply_rotary_pos_emb(q_rot, k_rot, cos, sin)
        return torch.cat((q_rot, q_pass), dim=-1), torch.cat((k_rot, k_pass), dim=-1)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[1].self_attn = PartialRotaryAttention(config, layer_idx=1)


EXPECTED = {"module": "model.layers.1.self_attn", "class": "PartialRotaryAttention", "cause": "model/rope"}
