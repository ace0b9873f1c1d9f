"""Decode attends over a context as long as the step instead of the sequence: in layer 1, the decode step's
context length is taken from the number of tokens in the step (its query length, 1) instead of the sequence
length (position + 1), so the decoded token reads only KV-cache slot 0 and none of the other cached tokens
or its own. Prefill attends over its own keys/values and is exact; only the decode step diverges.

Factory: target.py:build (tp_size 1). The bug: QueryLengthContextAttention.decode_attention.
"""

import importlib.util
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _serving():
    """../../serving_llama.py, imported by path once."""
    module = sys.modules.get("ekka_serving_llama")
    if module is None:
        spec = importlib.util.spec_from_file_location("ekka_serving_llama", os.path.join(HERE, "..", "..", "serving_llama.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


serving = _serving()


class QueryLengthContextAttention(serving.Attention):
    def decode_attention(self, query, positions):
        seq_len = positions.numel()
        key_positions = torch.arange(seq_len, device=positions.device)
        return self.attend(query, self.k_cache[:seq_len], self.v_cache[:seq_len], positions, key_positions)


def build():
    def patch(model):
        serving.swap_class(model.model.layers[1].self_attn.attn, QueryLengthContextAttention)

    return serving.load_model(tp_size=1, patch=patch), serving.serving_steps()
