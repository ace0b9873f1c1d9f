"""No bug: every RMSNorm is a 'fused' kernel computing x / sqrt(mean(x²) + eps) * w in another order."""

import torch

from modeling_llama import LlamaForCausalLM, LlamaRMSNorm


class FusedRMSNorm(LlamaRMSNorm):
    def forward(self, hidden_states):
        scale = self.weight / torch.sqrt((hidden_states * hidden_states).mean(-1, keepdim=True) + self.variance_epsilon)
        return hidden_states * scale


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        for layer in self.model.layers:
            layer.input_layernorm = FusedRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            layer.post_attention_layernorm = FusedRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.model.norm = FusedRMSNorm(config.hidden_size, eps=config.rms_norm_eps)


EXPECTED = {"module": None}
