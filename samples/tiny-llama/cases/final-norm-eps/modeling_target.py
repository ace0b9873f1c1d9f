"""Target engine: the fused final RMSNorm ignores the configured epsilon and uses its own."""

import torch

from modeling_llama import LlamaForCausalLM, LlamaRMSNorm

KERNEL_DEFAULT_EPS = 1e-2


class FusedFinalRMSNorm(LlamaRMSNorm):
    def forward(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * hidden_states * torch.rsqrt(variance + KERNEL_DEFAULT_EPS)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.norm = FusedFinalRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
