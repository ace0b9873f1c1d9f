"""Tensor parallelism 2: layer 2's down_proj (row-parallel) all-reduce keeps rank 0's partial sum and drops rank
1's. Both shards compute correctly; the layer's reduced output is wrong. At tp_size 1 the code path is not taken.

Factory: target.py:build (tp_size 2). The bug: DroppedRankRowParallelLinear.all_reduce.
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


class DroppedRankRowParallelLinear(serving.RowParallelLinear):
    def all_reduce(self, partials):
        return partials[0]


def build():
    def patch(model):
        serving.swap_class(model.model.layers[2].mlp.down_proj, DroppedRankRowParallelLinear)

    return serving.load_model(tp_size=2, patch=patch), serving.serving_steps()
