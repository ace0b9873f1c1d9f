"""Layer 2's fused add+RMSNorm hands the normed stream on as the residual."""

from modeling_llama import LlamaDecoderLayer, LlamaForCausalLM


class FusedAddNormLayer(LlamaDecoderLayer):
    def forward(self, hidden_states, cos, sin, attention_mask):
        residual = hidden_states
        hidden_states = self.self_attn(self.input_layernorm(hidden_states), cos, sin, attention_mask)
        hidden_states = self.post_attention_layernorm(residual + hidden_states)
        residual = hidden_states
        return residual + self.mlp(hidden_states)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[2] = FusedAddNormLayer(config, layer_idx=2)


EXPECTED = {"module": "model.layers.2", "class": "FusedAddNormLayer", "cause": "model/residual"}
