"""Gated MLP with gate and up swapped: layer 3's SiluAndMul computes silu(up) * gate from the fused gate | up output.

Factory: target.py:build (tp_size 1). The bug: SwappedSiluAndMul.forward.
"""

import importlib.util
import os
import sys

import torch.nn.functional as F

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


class SwappedSiluAndMul(serving.SiluAndMul):
    def forward(self, x):
        d = x.shape[-1] // 2
        return F.silu(x[..., d:]) * x[..., :d]


def build():
    def patch(model):
        serving.swap_class(model.model.layers[3].mlp.act_fn, SwappedSiluAndMul)

    return serving.load_model(tp_size=1, patch=patch), serving.serving_steps()
