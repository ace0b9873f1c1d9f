"""Layer 1's post-attention norm scales by (1 + w), Gemma style, on a LLaMA checkpoint."""

import torch

from modeling_llama import LlamaForCausalLM, LlamaRMSNorm


class GemmaStyleRMSNorm(LlamaRMSNorm):
    def forward(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return (1.0 + self.weight) * hidden_states * torch.rsqrt(variance + self.variance_epsilon)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[1].post_attention_layernorm = GemmaStyleRMSNorm(config.hidden_size, eps=config.rms_norm_eps)


EXPECTED = {"module": "model.layers.1.post_attention_layernorm", "class": "GemmaStyleRMSNorm", "cause": "model/norm"}
