"""Layer 2's down_proj dequantizes int8 weights with one per-tensor scale where per-channel was meant."""

import torch
from torch import nn

from modeling_llama import LlamaForCausalLM


class Int8PerTensorLinear(nn.Linear):
    def forward(self, x):
        scale = self.weight.abs().max() / 127.0
        dequantized = torch.round(self.weight / scale).clamp(-127, 127) * scale
        return torch.matmul(x, dequantized.t())


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[2].mlp.down_proj = Int8PerTensorLinear(config.intermediate_size, config.hidden_size, bias=False)


# Runs as an fp32 engine: the dequantization error (4.2e-4 of the logits) is below float16 noise: an fp32 engine.
EXPECTED = {"module": "model.layers.2.mlp.down_proj", "class": "Int8PerTensorLinear", "cause": "numerics/quantization", "subtle": True, "precision": "float32"}
