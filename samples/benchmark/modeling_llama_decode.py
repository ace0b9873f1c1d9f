"""The tiny LLaMA with a KV cache: prefill of all tokens but the last, then one decode step.

One forward runs both phases, so one ONNX graph holds them: each module is called once for the
prefill and once for the decode step (its outputs appear twice in the series, in that order).
Bugs planted in the decode path leave the prefill untouched. Same weights as modeling_llama.
"""

import torch

from modeling_llama import (
    LlamaAttention,
    LlamaDecoderLayer,
    LlamaForCausalLM,
    LlamaModel,
)


class CachedLlamaAttention(LlamaAttention):
    def update_cache(self, past_key, past_value, key_states, value_states):
        return torch.cat((past_key, key_states), dim=2), torch.cat((past_value, value_states), dim=2)

    def forward(self, hidden_states, cos, sin, attention_mask, past_key=None, past_value=None):
        bsz, q_len, _ = hidden_states.shape
        query_states = self.q_proj(hidden_states).view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key_states = self.k_proj(hidden_states).view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        query_states, key_states = self.apply_rotary(query_states, key_states, cos, sin)
        if past_key is not None:
            key_states, value_states = self.update_cache(past_key, past_value, key_states, value_states)
        expanded_keys, expanded_values = self.expand_kv(key_states, value_states)
        attn_weights = self.attention_scores(query_states, expanded_keys)
        attn_weights = self.attention_probs(attn_weights, attention_mask)
        attn_output = torch.matmul(attn_weights, expanded_values)
        attn_output = attn_output.transpose(1, 2).reshape(bsz, q_len, self.num_heads * self.head_dim)
        return self.o_proj(attn_output), key_states, value_states


class CachedLlamaDecoderLayer(LlamaDecoderLayer):
    def __init__(self, config, layer_idx):
        super().__init__(config, layer_idx)
        self.self_attn = CachedLlamaAttention(config, layer_idx)

    def forward(self, hidden_states, cos, sin, attention_mask, past_key=None, past_value=None):
        residual = hidden_states
        attn_output, key_states, value_states = self.self_attn(
            self.input_layernorm(hidden_states), cos, sin, attention_mask, past_key, past_value
        )
        hidden_states = residual + attn_output
        hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states, key_states, value_states


class CachedLlamaModel(LlamaModel):
    def __init__(self, config):
        super().__init__(config)
        self.layers = torch.nn.ModuleList(
            [CachedLlamaDecoderLayer(config, layer_idx) for layer_idx in range(config.num_hidden_layers)]
        )

    def decode_positions(self, position_ids):
        """Position of the token decoded after the prefill: the last one given."""
        return position_ids[:, -1:]

    def forward(self, input_ids, position_ids):
        hidden_states = self.embed_tokens(input_ids[:, :-1])
        attention_mask = self.causal_mask(hidden_states)
        cos, sin = self.rotary_emb(position_ids[:, :-1])
        cache = []
        for decoder_layer in self.layers:
            hidden_states, key_states, value_states = decoder_layer(hidden_states, cos, sin, attention_mask)
            cache.append((key_states, value_states))

        # Decode step: one new token attends to the whole cache and itself.
        hidden_states = self.embed_tokens(input_ids[:, -1:])
        cos, sin = self.rotary_emb(self.decode_positions(position_ids))
        decode_mask = torch.zeros_like(cache[0][0][:, :1, :1, :1]).expand(1, 1, 1, input_ids.shape[1])
        for decoder_layer, (past_key, past_value) in zip(self.layers, cache):
            hidden_states, _, _ = decoder_layer(hidden_states, cos, sin, decode_mask, past_key, past_value)
        return self.norm(hidden_states)


class CachedLlamaForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model = CachedLlamaModel(config)
