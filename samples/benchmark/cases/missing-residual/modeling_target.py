"""Layer 1 drops the residual connection around attention."""

from modeling_llama import LlamaDecoderLayer, LlamaForCausalLM


class NoAttentionResidualLayer(LlamaDecoderLayer):
    def forward(self, hidden_states, cos, sin, attention_mask):
        hidden_states = self.self_attn(self.input_layernorm(hidden_states), cos, sin, attention_mask)
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
        return residual + hidden_states


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[1] = NoAttentionResidualLayer(config, layer_idx=1)


EXPECTED = {"module": "model.layers.1", "class": "NoAttentionResidualLayer", "cause": "model/residual"}
