"""Control: the serving model at tensor parallelism 2 with no bug. Every module should stay within numerical noise
of the reference (the shards' partial sums are added in a different order than one full matmul).

Factory: target.py:build (tp_size 2).
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


def build():
    return serving.load_model(tp_size=2), serving.serving_steps()
