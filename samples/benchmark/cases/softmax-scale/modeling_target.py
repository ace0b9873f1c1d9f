"""Layer 3 scales attention scores by 1/head_dim instead of 1/sqrt(head_dim)."""

import torch

from modeling_llama import LlamaAttention, LlamaForCausalLM


class WrongScaleAttention(LlamaAttention):
    def attention_scores(self, query_states, key_states):
        return torch.matmul(query_states, key_states.transpose(2, 3)) / self.head_dim


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[3].self_attn = WrongScaleAttention(config, layer_idx=3)


EXPECTED = {"module": "model.layers.3.self_attn", "class": "WrongScaleAttention", "cause": "model/attention"}
