"""Layer 3's MLP keeps its intermediate activations in float16 (a missing upcast), losing precision."""

from modeling_llama import LlamaForCausalLM, LlamaMLP


class HalfPrecisionMLP(LlamaMLP):
    def forward(self, x):
        hidden = self.act_fn(self.gate_proj(x)) * self.up_proj(x)
        return self.down_proj(hidden.half().float())


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[3].mlp = HalfPrecisionMLP(config)


# Runs as an fp32 engine: a float16 round trip is only a bug in an fp32 engine.
EXPECTED = {"module": "model.layers.3.mlp", "class": "HalfPrecisionMLP", "cause": "numerics/precision", "subtle": True, "precision": "float32"}
