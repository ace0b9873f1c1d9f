"""Tensor parallelism 2, wrong shard: layer 3's fused QKV loader gives every rank key/value head 0, as if the
two key/value heads were replicated over the ranks. Rank 1's shard (shards.1) computes head 0's keys and
values for query heads 2 and 3, so the gathered q | k | v output of qkv_proj carries k0, v0 in place of
k1, v1. At tp_size 1 the code path is not taken.

Factory: target.py:build (tp_size 2). The bug: ReplicatedKVQKVParallelLinear.shard_of.
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


class ReplicatedKVQKVParallelLinear(serving.QKVParallelLinear):
    def shard_of(self, index, weight, rank):
        rank = rank if index == 0 else 0
        return super().shard_of(index, weight, rank)


def build():
    def patch(model):
        serving.swap_class(model.model.layers[3].self_attn.qkv_proj, ReplicatedKVQKVParallelLinear)

    return serving.load_model(tp_size=2, patch=patch), serving.serving_steps()
