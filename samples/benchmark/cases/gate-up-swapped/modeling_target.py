"""Layer 3's gated MLP applies the activation to the up projection instead of the gate."""

from modeling_llama import LlamaForCausalLM, LlamaMLP


class SwappedGateMLP(LlamaMLP):
    def forward(self, x):
        return self.down_proj(self.gate_proj(x) * self.act_fn(self.up_proj(x)))


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[3].mlp = SwappedGateMLP(config)


EXPECTED = {"module": "model.layers.3.mlp", "class": "SwappedGateMLP", "cause": "model/activation"}
