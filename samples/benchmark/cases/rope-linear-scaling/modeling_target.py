"""The engine applies linear RoPE scaling (factor 2) from a config entry meant for another model."""

from modeling_llama import LlamaForCausalLM, LlamaRotaryEmbedding


class LinearScaledRotaryEmbedding(LlamaRotaryEmbedding):
    scaling_factor = 2.0

    def forward(self, position_ids):
        freqs = (position_ids.float() / self.scaling_factor)[:, :, None] * self.inv_freq[None, None, :]
        emb = freqs.repeat(1, 1, 2)
        return emb.cos(), emb.sin()


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.rotary_emb = LinearScaledRotaryEmbedding(config.head_dim, base=config.rope_theta)


EXPECTED = {"module": "model.rotary_emb", "class": "LinearScaledRotaryEmbedding", "cause": "model/rope"}
