"""Layer 3's input norm uses eps 1e-4 instead of the configured 1e-6: a subtle error."""

from modeling_llama import LlamaForCausalLM, LlamaRMSNorm


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[3].input_layernorm = LlamaRMSNorm(config.hidden_size, eps=1e-4)  # bug: eps


# Runs as an fp32 engine: the error (7.7e-6 of the logits) is far below float16 noise: an fp32 engine.
EXPECTED = {"module": "model.layers.3.input_layernorm", "marker": "# bug: eps", "cause": "model/norm", "subtle": True, "precision": "float32"}
