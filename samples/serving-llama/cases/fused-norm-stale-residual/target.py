"""Fused add + RMSNorm returning the wrong stream: layer 2's post_attention_layernorm normalizes x + residual
but hands back the residual it was given (the pre-add stream), so the attention output never reaches the
residual stream of the later layers.

Factory: target.py:build (tp_size 1). The bug: StaleResidualRMSNorm.forward.
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


class StaleResidualRMSNorm(serving.RMSNorm):
    def forward(self, x, residual=None):
        out, _ = super().forward(x, residual)
        return out, residual


def build():
    def patch(model):
        serving.swap_class(model.model.layers[2].post_attention_layernorm, StaleResidualRMSNorm)

    return serving.load_model(tp_size=1, patch=patch), serving.serving_steps()
