"""Layer 0 maps key/value heads to query heads round-robin (repeat) instead of in blocks (repeat_interleave)."""

from modeling_llama import LlamaAttention, LlamaForCausalLM


class RoundRobinKvAttention(LlamaAttention):
    def expand_kv(self, key_states, value_states):
        groups = self.num_key_value_groups
        return key_states.repeat(1, groups, 1, 1), value_states.repeat(1, groups, 1, 1)


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[0].self_attn = RoundRobinKvAttention(config, layer_idx=0)


EXPECTED = {"module": "model.layers.0.self_attn", "class": "RoundRobinKvAttention", "cause": "model/attention"}
