"""The config parser reads layer_norm_eps (1e-3) instead of rms_norm_eps (1e-6) for every norm."""

from modeling_llama import LlamaDecoderLayer, LlamaForCausalLM, LlamaRMSNorm

LAYER_NORM_EPS = 1e-3


class MisconfiguredDecoderLayer(LlamaDecoderLayer):
    def __init__(self, config, layer_idx):
        super().__init__(config, layer_idx)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=LAYER_NORM_EPS)  # bug: config key
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=LAYER_NORM_EPS)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        for idx in range(config.num_hidden_layers):
            self.model.layers[idx] = MisconfiguredDecoderLayer(config, idx)


# Runs as an fp32 engine: the error (2.8e-4 of the logits) is below float16 noise: an fp32 engine.
EXPECTED = {"module": "model.layers.0.input_layernorm", "marker": "# bug: config key", "cause": "model/config", "subtle": True, "precision": "float32"}
