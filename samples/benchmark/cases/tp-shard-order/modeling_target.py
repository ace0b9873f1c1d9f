"""Column-parallel gate_proj at TP=2 in layer 0 gathers the two shards in the wrong order."""

import torch
from torch import nn

from modeling_llama import LlamaForCausalLM


class ColumnParallelLinear(nn.Linear):
    tp_size = 2

    def forward(self, x):
        shard = self.out_features // self.tp_size
        outputs = [torch.matmul(x, self.weight[r * shard : (r + 1) * shard].t()) for r in range(self.tp_size)]
        return torch.cat(outputs[::-1], dim=-1)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[0].mlp.gate_proj = ColumnParallelLinear(config.hidden_size, config.intermediate_size, bias=False)


EXPECTED = {"module": "model.layers.0.mlp.gate_proj", "class": "ColumnParallelLinear", "cause": "runtime/parallelism"}
