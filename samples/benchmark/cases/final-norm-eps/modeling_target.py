"""The fused final RMSNorm ignores the configured epsilon and uses its kernel's default."""

import torch

from modeling_llama import LlamaForCausalLM, LlamaRMSNorm


class FusedFinalRMSNorm(LlamaRMSNorm):
    def forward(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * hidden_states * torch.rsqrt(variance + 1e-2)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.norm = FusedFinalRMSNorm(config.hidden_size, eps=config.rms_norm_eps)


EXPECTED = {"module": "model.norm", "class": "FusedFinalRMSNorm", "cause": "model/norm"}
