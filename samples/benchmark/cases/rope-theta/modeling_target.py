"""The engine reads rope_theta from a long-context config key: base 1e6 instead of 1e4."""

from modeling_llama import LlamaForCausalLM, LlamaRotaryEmbedding


class LongContextRotaryEmbedding(LlamaRotaryEmbedding):
    def __init__(self, dim, base=10000.0):
        super().__init__(dim, base=1000000.0)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.rotary_emb = LongContextRotaryEmbedding(config.head_dim, base=config.rope_theta)


EXPECTED = {"module": "model.rotary_emb", "class": "LongContextRotaryEmbedding", "cause": "model/rope"}
