"""Splitting a fused qkv checkpoint in the order q, v, k: layer 0's k_proj and v_proj trade weights."""

from modeling_llama import LlamaForCausalLM


class TargetForCausalLM(LlamaForCausalLM):
    def load_reference_weights(self, state_dict):
        state_dict = dict(state_dict)
        k, v = "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"
        state_dict[k], state_dict[v] = state_dict[v], state_dict[k]
        self.load_state_dict(state_dict)


EXPECTED = {
    "module": "model.layers.0.self_attn.k_proj",
    "construction": ("modeling_llama.py", "self.k_proj = nn.Linear("),
    "cause": "model/weights",
}
