"""Layer 2's MLP is built with GELU where the checkpoint expects SiLU."""

from torch import nn

from modeling_llama import LlamaForCausalLM


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[2].mlp.act_fn = nn.GELU()  # bug: activation


EXPECTED = {"module": "model.layers.2.mlp.act_fn", "marker": "# bug: activation", "cause": "model/activation"}
