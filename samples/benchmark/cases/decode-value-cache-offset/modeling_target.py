"""Layer 2 reads its value cache from the ring buffer one slot off: keys and values no longer line up."""

import torch

from modeling_llama_decode import CachedLlamaAttention, CachedLlamaForCausalLM


class OffsetValueCacheAttention(CachedLlamaAttention):
    def update_cache(self, past_key, past_value, key_states, value_states):
        past_value = torch.roll(past_value, shifts=1, dims=2)
        return torch.cat((past_key, key_states), dim=2), torch.cat((past_value, value_states), dim=2)


class TargetForCausalLM(CachedLlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model.layers[2].self_attn = OffsetValueCacheAttention(config, layer_idx=2)


EXPECTED = {"module": "model.layers.2.self_attn", "class": "OffsetValueCacheAttention", "cause": "runtime/kv-cache", "reference": "decode"}
