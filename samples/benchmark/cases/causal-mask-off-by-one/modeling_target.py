"""The causal mask lets every token attend to the token after it."""

import torch

from modeling_llama import LlamaForCausalLM, LlamaModel


class LookaheadMaskModel(LlamaModel):
    def causal_mask(self, hidden_states):
        positions = torch.arange(hidden_states.shape[1], device=hidden_states.device)
        blocked = positions[None, :] > positions[:, None] + 1
        return blocked.to(hidden_states.dtype)[None, None, :, :] * torch.finfo(hidden_states.dtype).min


class TargetForCausalLM(LlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model = LookaheadMaskModel(config)


EXPECTED = {"module": "model", "class": "LookaheadMaskModel", "cause": "model/attention"}
