"""The tiny-llama sample's weights and input, shared by the reference and the serving implementation.

The HuggingFace-style reference model is built exactly as `../tiny-llama/generate.py` builds it (seed
1234, default LlamaConfig, RMSNorm weights 1 + 0.1·randn), from `../tiny-llama/modeling_llama.py`
loaded by path, so the weights are the same as those in `../tiny-llama/reference.onnx`.
"""

import importlib.util
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_LLAMA = os.path.join(HERE, "..", "tiny-llama")

SEED = 1234  # as in ../tiny-llama/generate.py
NEXT_TOKEN = 42  # the token fed to the decode step (the reference's 17th token)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load_by_path(name, path):
    """Imports a Python file under a fixed module name (registered in sys.modules, so inspect finds
    its source); a second call returns the module already loaded."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def hf_modeling():
    """`../tiny-llama/modeling_llama.py` (LlamaConfig, LlamaForCausalLM, ...)."""
    return load_by_path("ekka_tiny_llama_modeling", os.path.join(TINY_LLAMA, "modeling_llama.py"))


def build_hf_reference():
    """The tiny-llama reference model in float32, in eval mode (the same as generate.py's
    build_reference). The global random state is left as it was."""
    modeling = hf_modeling()
    config = modeling.LlamaConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = modeling.LlamaForCausalLM(config)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                    param.copy_(1.0 + 0.1 * torch.randn_like(param))
    return model.eval()


def config():
    return hf_modeling().LlamaConfig()


def hf_state_dict():
    """HuggingFace parameter names (model.layers.N.self_attn.q_proj.weight, ...) -> float32 tensors."""
    return {name: tensor.detach().clone() for name, tensor in build_hf_reference().state_dict().items()}


def input_ids():
    """The 16 prompt token ids of ../tiny-llama/input.json, as a 1-D int64 tensor."""
    with open(os.path.join(TINY_LLAMA, "input.json")) as handle:
        data = json.load(handle)["input_ids"]["data"]
    ids = torch.tensor(data, dtype=torch.int64)
    assert ids.shape == (16,), ids.shape
    return ids


def dtype_from_env():
    """The dtype named by EKKA_DTYPE (float32 when unset)."""
    name = os.environ.get("EKKA_DTYPE", "float32")
    if name not in DTYPES:
        raise ValueError(f"EKKA_DTYPE={name!r}: expected one of {sorted(DTYPES)}")
    return DTYPES[name]
