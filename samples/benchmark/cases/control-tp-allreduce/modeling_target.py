"""No bug: every down_proj runs row-parallel at TP=2 and all-reduces its partial sums correctly."""

import torch
from torch import nn

from modeling_llama import LlamaForCausalLM


class RowParallelLinear(nn.Linear):
    tp_size = 2

    def forward(self, x):
        shard = self.in_features // self.tp_size
        partials = [
            torch.matmul(x[..., r * shard : (r + 1) * shard], self.weight[:, r * shard : (r + 1) * shard].t())
            for r in range(self.tp_size)
        ]
        return partials[0] + partials[1]


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        for layer in self.model.layers:
            layer.mlp.down_proj = RowParallelLinear(config.intermediate_size, config.hidden_size, bias=False)


EXPECTED = {"module": None}
