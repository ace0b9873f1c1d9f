"""A fused SwiGLU kernel approximates SiLU with a hard sigmoid in layer 1."""

import torch
from torch import nn

from modeling_llama import LlamaForCausalLM


class FusedApproxSiLU(nn.Module):
    def forward(self, x):
        return x * torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[1].mlp.act_fn = FusedApproxSiLU()


EXPECTED = {"module": "model.layers.1.mlp.act_fn", "class": "FusedApproxSiLU", "cause": "kernel/fusion"}
