"""No bug: the cached engine itself, its decode step against the same engine's float32 run."""

from modeling_llama_decode import CachedLlamaForCausalLM


class TargetForCausalLM(CachedLlamaForCausalLM):
    pass


EXPECTED = {"module": None, "reference": "decode"}
