"""In the decode step the engine rotates the new token at its offset in the step (0), not its position."""

from modeling_llama_decode import CachedLlamaForCausalLM, CachedLlamaModel


class StepOffsetPositionsModel(CachedLlamaModel):
    def decode_positions(self, position_ids):
        return position_ids[:, -1:] * 0


class TargetForCausalLM(CachedLlamaForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        self.model = StepOffsetPositionsModel(config)


EXPECTED = {"module": "model", "class": "StepOffsetPositionsModel", "cause": "runtime/kv-cache", "reference": "decode"}
