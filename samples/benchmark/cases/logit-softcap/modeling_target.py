"""Layer 2 soft-caps attention logits (tanh, cap 2.0), a Gemma-2 feature this model does not have."""

import torch

from modeling_llama import LlamaAttention, LlamaForCausalLM


class SoftCappedAttention(LlamaAttention):
    cap = 2.0

    def attention_scores(self, query_states, key_states):
        scores = torch.matmul(query_states, key_states.transpose(2, 3)) / (self.head_dim**0.5)
        return self.cap * torch.tanh(scores / self.cap)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[2].self_attn = SoftCappedAttention(config, layer_idx=2)


EXPECTED = {"module": "model.layers.2.self_attn", "class": "SoftCappedAttention", "cause": "model/attention"}
