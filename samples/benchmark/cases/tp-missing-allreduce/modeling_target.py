"""Row-parallel down_proj at TP=2 in layer 2: the partial sums are never all-reduced (only rank 0's half)."""

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
        return partials[0]


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[2].mlp.down_proj = RowParallelLinear(config.intermediate_size, config.hidden_size, bias=False)


EXPECTED = {"module": "model.layers.2.mlp.down_proj", "class": "RowParallelLinear", "cause": "runtime/parallelism"}
