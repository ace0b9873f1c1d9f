"""Vocabulary padding handled off by one: the lm_head rows are shifted by one token."""

import torch

from modeling_llama import LlamaForCausalLM


class TargetForCausalLM(LlamaForCausalLM):
    def load_reference_weights(self, state_dict):
        state_dict = dict(state_dict)
        state_dict["lm_head.weight"] = torch.roll(state_dict["lm_head.weight"], shifts=1, dims=0)
        self.load_state_dict(state_dict)


EXPECTED = {
    "module": "lm_head",
    "construction": ("modeling_llama.py", "self.lm_head = nn.Linear("),
    "cause": "model/weights",
}
