"""Layer 3's attention kernel mis-indexes the last query row: it reads the previous row's probabilities."""

import torch

from modeling_llama import LlamaAttention, LlamaForCausalLM


class LastRowKernelAttention(LlamaAttention):
    def attention_probs(self, attn_weights, attention_mask):
        probs = torch.softmax(attn_weights + attention_mask, dim=-1)
        seq = probs.shape[-2]
        rows = torch.cat((torch.arange(seq - 1), torch.tensor([seq - 2])))
        return probs.index_select(-2, rows)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[3].self_attn = LastRowKernelAttention(config, layer_idx=3)


EXPECTED = {"module": "model.layers.3.self_attn", "class": "LastRowKernelAttention", "cause": "kernel/implementation", "subtle": True}
