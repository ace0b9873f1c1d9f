"""Fused QKV loading in the order q, v, k: layer 1's qkv_proj holds v_proj's rows where k_proj's belong and the
reverse, while the attention still splits its output as q | k | v.

Factory: target.py:build (tp_size 1). The bug: SwappedKVQKVParallelLinear.load_weight.
"""

import importlib.util
import os
import sys

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


class SwappedKVQKVParallelLinear(serving.QKVParallelLinear):
    def load_weight(self, weights):
        q, k, v = weights
        super().load_weight([q, v, k])


def build():
    def patch(model):
        serving.swap_class(model.model.layers[1].self_attn.qkv_proj, SwappedKVQKVParallelLinear)

    return serving.load_model(tp_size=1, patch=patch), serving.serving_steps()
