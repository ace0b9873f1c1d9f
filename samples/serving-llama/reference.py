"""Reference factory: the HuggingFace-style tiny LLaMA (../tiny-llama/modeling_llama.py) with the sample's
weights, run once over 17 tokens: the 16 prompt tokens and the token the serving implementation
decodes (weights.NEXT_TOKEN). Its outputs at positions 0..15 line up with the serving prefill step,
position 16 with the serving decode step.

Factory: reference.py:build -> (model, [ {input_ids: [1, 17], position_ids: [1, 17]} ])
"""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _weights():
    module = sys.modules.get("ekka_serving_llama_weights")
    if module is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("ekka_serving_llama_weights", os.path.join(HERE, "weights.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


weights = _weights()


def reference_steps():
    tokens = torch.cat([weights.input_ids(), torch.tensor([weights.NEXT_TOKEN])])
    return [{"input_ids": tokens[None, :], "position_ids": torch.arange(tokens.numel())[None, :]}]


def build():
    """The reference model (at EKKA_DTYPE, float32 by default) and its single step of 17 tokens."""
    model = weights.build_hf_reference().to(weights.dtype_from_env())
    return model, reference_steps()
