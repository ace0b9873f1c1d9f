"""The weight loader stores layer 2's o_proj weight transposed (square, so nothing complains)."""

from modeling_llama import LlamaForCausalLM


class TargetForCausalLM(LlamaForCausalLM):
    def load_reference_weights(self, state_dict):
        state_dict = dict(state_dict)
        key = "model.layers.2.self_attn.o_proj.weight"
        state_dict[key] = state_dict[key].t().contiguous()
        self.load_state_dict(state_dict)


EXPECTED = {
    "module": "model.layers.2.self_attn.o_proj",
    "construction": ("modeling_llama.py", "self.o_proj = nn.Linear("),
    "cause": "model/weights",
}
