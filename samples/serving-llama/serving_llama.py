"""A serving-engine-style (vLLM-like) implementation of the tiny LLaMA, loading the tiny-llama weights.

How it differs from the HuggingFace-style reference (../tiny-llama/modeling_llama.py), as vLLM does:
- tokens are flattened: hidden states are [num_tokens, hidden], forward(input_ids [T], positions [T]);
- fused projections: self_attn.qkv_proj (output q|k|v on the last dim), mlp.gate_up_proj (gate|up),
  mlp.act_fn = SiluAndMul (silu(gate) * up);
- fused residual add + RMSNorm: norm(x) -> out; norm(x, residual) -> (out, x + residual); a decoder layer
  returns (mlp output, residual stream), not their sum; the final model.norm adds the last residual;
- attention keeps a KV cache: a prefill step (positions 0..T-1) starts a new sequence and writes its
  keys/values; a decode step reads the cached ones;
- optional simulated tensor parallelism (tp_size=2): column-parallel layers (qkv_proj, gate_up_proj) and
  row-parallel layers (o_proj, down_proj) run one nn.Linear per rank (`shards.0`, `shards.1`); the
  layer's own output is the gathered (column) or all-reduced (row) full tensor, in the unsharded layout.

Factories (no arguments, return (model, steps); each step is run as model(**step)):
  serving_llama.py:build      tp_size 1
  serving_llama.py:build_tp2  tp_size 2
Steps: prefill {input_ids [16], positions 0..15}, then decode {input_ids [1] = NEXT_TOKEN, positions [16]}.
The model runs at EKKA_DTYPE (float32 or bfloat16); converting it later with model.to(dtype) works too.

Written for Debian's torch 1.13 on CPU: no strided slices, RMSNorm and softmax upcast to float32.
"""

import contextlib
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

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

MAX_POSITION = 64  # rotary cache length and KV cache slots


# ----------------------------------------------------------------------------------------------
# Forward context: what the attention layers need to know about the batch (vLLM keeps it in a
# global forward context set by the model runner; here LlamaForCausalLM.forward sets it).


class AttentionMetadata:
    def __init__(self, positions):
        self.positions = positions
        # A step whose positions are 0..T-1 starts a new sequence (prefill); any other step continues
        # the cached one (decode).
        expected = torch.arange(positions.numel(), device=positions.device)
        self.is_prefill = bool(torch.equal(positions.to(torch.int64), expected))
        self.slot_mapping = positions  # one sequence in one contiguous cache region: slot = position


_forward_context = []


@contextlib.contextmanager
def set_forward_context(metadata):
    _forward_context.append(metadata)
    try:
        yield
    finally:
        _forward_context.pop()


def get_forward_context():
    if not _forward_context:
        raise RuntimeError("attention called outside a model forward (no attention metadata)")
    return _forward_context[-1]


# ----------------------------------------------------------------------------------------------
# Layers


class RMSNorm(nn.Module):
    """Fused residual add + RMSNorm, as vLLM's RMSNorm.forward_native.

    forward(x) -> out; forward(x, residual) -> (out, x + residual). The variance is taken in float32
    and the normalized value cast back to the input dtype before the weight is applied."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x, residual=None):
        orig_dtype = x.dtype
        x = x.to(torch.float32)
        if residual is not None:
            x = x + residual.to(torch.float32)
            residual = x.to(orig_dtype)
        variance = x.pow(2).mean(dim=-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        x = x.to(orig_dtype) * self.weight
        if residual is None:
            return x
        return x, residual


class VocabParallelEmbedding(nn.Module):
    """Token embedding (replicated here: the vocabulary is not sharded)."""

    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_embeddings, embedding_dim))

    def forward(self, input_ids):
        return F.embedding(input_ids, self.weight)


class ParallelLMHead(VocabParallelEmbedding):
    """Output projection to the vocabulary; called as a module so its logits are captured."""

    def forward(self, hidden_states):
        return F.linear(hidden_states, self.weight)


class ColumnParallelLinear(nn.Module):
    """A linear layer whose output is the concatenation of logical outputs (`output_sizes`).

    tp_size 1: one weight. tp_size > 1: rank r's shard (`shards.r`, an nn.Linear) holds the r-th slice
    of every logical output's rows; the layer gathers the shards' outputs back into the unsharded
    layout (all of output 0, then all of output 1, ...)."""

    def __init__(self, input_size, output_sizes, tp_size=1):
        super().__init__()
        self.input_size = input_size
        self.output_sizes = list(output_sizes)
        self.tp_size = tp_size
        if any(size % tp_size for size in self.output_sizes):
            raise ValueError(f"output sizes {self.output_sizes} do not split over {tp_size} ranks")
        if tp_size == 1:
            self.weight = nn.Parameter(torch.zeros(sum(self.output_sizes), input_size))
        else:
            shard_size = sum(self.output_sizes) // tp_size
            self.shards = nn.ModuleList([nn.Linear(input_size, shard_size, bias=False) for _ in range(tp_size)])

    def shard_of(self, index, weight, rank):
        """Rank `rank`'s rows of logical output `index` (full weight [output_size, input_size])."""
        return weight.chunk(self.tp_size, dim=0)[rank]

    def load_weight(self, weights):
        """weights: one [output_size, input_size] tensor per logical output, in order."""
        with torch.no_grad():
            if self.tp_size == 1:
                self.weight.copy_(torch.cat(weights, dim=0))
                return
            for rank, shard in enumerate(self.shards):
                shard.weight.copy_(torch.cat([self.shard_of(i, w, rank) for i, w in enumerate(weights)], dim=0))

    def gather(self, outputs):
        """Per-rank outputs [T, shard_size] -> [T, sum(output_sizes)] in the unsharded layout."""
        per_rank = [out.split([size // self.tp_size for size in self.output_sizes], dim=-1) for out in outputs]
        return torch.cat([pieces[i] for i in range(len(self.output_sizes)) for pieces in per_rank], dim=-1)

    def forward(self, x):
        if self.tp_size == 1:
            return F.linear(x, self.weight)
        return self.gather([shard(x) for shard in self.shards])


class QKVParallelLinear(ColumnParallelLinear):
    """Fused q, k, v projection: output q | k | v. Rank r holds its query heads and its key/value heads."""

    def __init__(self, hidden_size, head_dim, num_heads, num_kv_heads, tp_size=1):
        sizes = [num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim]
        super().__init__(hidden_size, sizes, tp_size)


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Fused gate and up projections: output gate | up."""


class RowParallelLinear(nn.Module):
    """A linear layer whose input is split by columns over the ranks (`shards.r` sees the r-th slice of
    the input features); the partial sums are added (the all-reduce)."""

    def __init__(self, input_size, output_size, tp_size=1):
        super().__init__()
        self.tp_size = tp_size
        if input_size % tp_size:
            raise ValueError(f"input size {input_size} does not split over {tp_size} ranks")
        self.input_size_per_rank = input_size // tp_size
        if tp_size == 1:
            self.weight = nn.Parameter(torch.zeros(output_size, input_size))
        else:
            self.shards = nn.ModuleList(
                [nn.Linear(self.input_size_per_rank, output_size, bias=False) for _ in range(tp_size)]
            )

    def load_weight(self, weight):
        with torch.no_grad():
            if self.tp_size == 1:
                self.weight.copy_(weight)
                return
            for rank, shard in enumerate(self.shards):
                shard.weight.copy_(weight.chunk(self.tp_size, dim=1)[rank])

    def all_reduce(self, partials):
        return torch.stack(partials, dim=0).sum(dim=0)

    def forward(self, x):
        if self.tp_size == 1:
            return F.linear(x, self.weight)
        inputs = x.split(self.input_size_per_rank, dim=-1)
        return self.all_reduce([shard(part) for shard, part in zip(self.shards, inputs)])


class SiluAndMul(nn.Module):
    """x = gate | up on the last dim -> silu(gate) * up."""

    def forward(self, x):
        d = x.shape[-1] // 2
        return F.silu(x[..., :d]) * x[..., d:]


class RotaryEmbedding(nn.Module):
    """NeoX-style rotary embedding over a cos|sin cache indexed by position (vLLM's RotaryEmbedding).
    The cache is computed in float32 and follows model.to(dtype), as in vLLM.

    forward(positions [T], query [T, heads*head_dim], key [T, kv_heads*head_dim]) -> (query, key)."""

    def __init__(self, head_size, max_position=MAX_POSITION, base=10000.0):
        super().__init__()
        self.head_size = head_size
        self.max_position = max_position
        self.base = base
        self.register_buffer("cos_sin_cache", self._compute_cos_sin_cache(), persistent=False)

    def _compute_inv_freq(self, base):
        return 1.0 / (base ** (torch.arange(0, self.head_size, 2).float() / self.head_size))

    def _compute_cos_sin_cache(self):
        inv_freq = self._compute_inv_freq(self.base)
        t = torch.arange(self.max_position, dtype=torch.float32)
        freqs = t[:, None] * inv_freq[None, :]
        return torch.cat((freqs.cos(), freqs.sin()), dim=-1)

    def _rotate(self, x, cos, sin):
        num_tokens = x.shape[0]
        x = x.reshape(num_tokens, -1, self.head_size)
        x1, x2 = x.chunk(2, dim=-1)
        cos, sin = cos[:, None, :], sin[:, None, :]
        out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        return out.reshape(num_tokens, -1)

    def forward(self, positions, query, key):
        cos, sin = self.cos_sin_cache.index_select(0, positions).chunk(2, dim=-1)
        return self._rotate(query, cos, sin), self._rotate(key, cos, sin)


class Attention(nn.Module):
    """Scaled dot-product attention with grouped-query heads and a KV cache.

    forward(query [T, heads*head_dim], key, value [T, kv_heads*head_dim]) -> [T, heads*head_dim].
    Prefill: a new cache is allocated, the step's keys/values written at their slots, and attention runs
    over the step's own keys/values (causal). Decode: the keys/values are written, then each query
    attends to the cached slots 0..its position. Scores and softmax in float32, like attention kernels."""

    def __init__(self, num_heads, head_size, num_kv_heads, max_slots=MAX_POSITION):
        super().__init__()
        self.num_heads = num_heads
        self.head_size = head_size
        self.num_kv_heads = num_kv_heads
        self.num_queries_per_kv = num_heads // num_kv_heads
        self.scale = head_size**-0.5
        self.max_slots = max_slots
        self.k_cache = None  # [max_slots, kv_heads, head_size], allocated by a prefill step
        self.v_cache = None

    def allocate_cache(self, like):
        shape = (self.max_slots, self.num_kv_heads, self.head_size)
        self.k_cache = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.v_cache = torch.zeros(shape, dtype=like.dtype, device=like.device)

    def write_cache(self, key, value, slot_mapping):
        self.k_cache[slot_mapping] = key.reshape(-1, self.num_kv_heads, self.head_size)
        self.v_cache[slot_mapping] = value.reshape(-1, self.num_kv_heads, self.head_size)

    def expand_kv(self, x):
        """[S, kv_heads, d] -> [S, heads, d]: query head h reads key/value head h // queries_per_kv."""
        slots, kv_heads, dim = x.shape
        x = x[:, :, None, :].expand(slots, kv_heads, self.num_queries_per_kv, dim)
        return x.reshape(slots, kv_heads * self.num_queries_per_kv, dim)

    def attend(self, query, keys, values, query_positions, key_positions):
        """query [T, heads*d]; keys/values [S, kv_heads, d] at key_positions [S]; causal by position."""
        num_tokens = query.shape[0]
        q = query.reshape(num_tokens, self.num_heads, self.head_size).transpose(0, 1)
        k = self.expand_kv(keys).transpose(0, 1)
        v = self.expand_kv(values).transpose(0, 1)
        scores = torch.matmul(q.float(), k.float().transpose(1, 2)) * self.scale
        blocked = key_positions[None, :] > query_positions[:, None]
        scores = scores.masked_fill(blocked[None, :, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        out = torch.matmul(probs, v)
        return out.transpose(0, 1).reshape(num_tokens, self.num_heads * self.head_size)

    def prefill_attention(self, query, key, value, positions):
        kv_shape = (-1, self.num_kv_heads, self.head_size)
        return self.attend(query, key.reshape(kv_shape), value.reshape(kv_shape), positions, positions)

    def decode_attention(self, query, positions):
        seq_len = int(positions.max()) + 1  # the sequence so far: every cached slot up to the newest position
        key_positions = torch.arange(seq_len, device=positions.device)
        return self.attend(query, self.k_cache[:seq_len], self.v_cache[:seq_len], positions, key_positions)

    def forward(self, query, key, value):
        metadata = get_forward_context()
        if metadata.is_prefill:
            self.allocate_cache(key)
        self.write_cache(key, value, metadata.slot_mapping)
        if metadata.is_prefill:
            return self.prefill_attention(query, key, value, metadata.positions)
        return self.decode_attention(query, metadata.positions)


class LlamaAttention(nn.Module):
    def __init__(self, config, tp_size=1):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_kv_heads * self.head_dim
        self.qkv_proj = QKVParallelLinear(config.hidden_size, self.head_dim, self.num_heads, self.num_kv_heads, tp_size)
        self.o_proj = RowParallelLinear(self.q_size, config.hidden_size, tp_size)
        # vLLM shares one rotary module between layers (get_rope caches it); one per layer here, so that
        # every module runs once per step.
        self.rotary_emb = RotaryEmbedding(self.head_dim, base=config.rope_theta)
        self.attn = Attention(self.num_heads, self.head_dim, self.num_kv_heads)

    def forward(self, positions, hidden_states):
        qkv = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q, k = self.rotary_emb(positions, q, k)
        attn_output = self.attn(q, k, v)
        return self.o_proj(attn_output)


class LlamaMLP(nn.Module):
    def __init__(self, config, tp_size=1):
        super().__init__()
        size = config.intermediate_size
        self.gate_up_proj = MergedColumnParallelLinear(config.hidden_size, [size, size], tp_size)
        self.down_proj = RowParallelLinear(size, config.hidden_size, tp_size)
        self.act_fn = SiluAndMul()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config, tp_size=1):
        super().__init__()
        self.self_attn = LlamaAttention(config, tp_size)
        self.mlp = LlamaMLP(config, tp_size)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, positions, hidden_states, residual):
        if residual is None:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
        else:
            hidden_states, residual = self.input_layernorm(hidden_states, residual)
        hidden_states = self.self_attn(positions=positions, hidden_states=hidden_states)
        hidden_states, residual = self.post_attention_layernorm(hidden_states, residual)
        hidden_states = self.mlp(hidden_states)
        return hidden_states, residual


class LlamaModel(nn.Module):
    def __init__(self, config, tp_size=1):
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(config, tp_size) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, input_ids, positions):
        hidden_states = self.embed_tokens(input_ids)
        residual = None
        for layer in self.layers:
            hidden_states, residual = layer(positions, hidden_states, residual)
        hidden_states, _ = self.norm(hidden_states, residual)
        return hidden_states


class LlamaForCausalLM(nn.Module):
    """forward(input_ids [T], positions [T]) -> logits [T, vocab]."""

    def __init__(self, config, tp_size=1):
        super().__init__()
        self.config = config
        self.tp_size = tp_size
        self.model = LlamaModel(config, tp_size)
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size)

    def forward(self, input_ids, positions):
        with set_forward_context(AttentionMetadata(positions)):
            hidden_states = self.model(input_ids, positions)
        return self.lm_head(hidden_states)

    def load_weights(self, hf_state_dict):
        """Loads HuggingFace-named weights: q/k/v and gate/up are concatenated, and sharded when tp_size > 1."""
        sd = hf_state_dict
        with torch.no_grad():
            self.model.embed_tokens.weight.copy_(sd["model.embed_tokens.weight"])
            self.model.norm.weight.copy_(sd["model.norm.weight"])
            self.lm_head.weight.copy_(sd["lm_head.weight"])
            for index, layer in enumerate(self.model.layers):
                p = f"model.layers.{index}."
                attn = p + "self_attn."
                layer.self_attn.qkv_proj.load_weight(
                    [sd[attn + "q_proj.weight"], sd[attn + "k_proj.weight"], sd[attn + "v_proj.weight"]]
                )
                layer.self_attn.o_proj.load_weight(sd[attn + "o_proj.weight"])
                layer.mlp.gate_up_proj.load_weight([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]])
                layer.mlp.down_proj.load_weight(sd[p + "mlp.down_proj.weight"])
                layer.input_layernorm.weight.copy_(sd[p + "input_layernorm.weight"])
                layer.post_attention_layernorm.weight.copy_(sd[p + "post_attention_layernorm.weight"])


# ----------------------------------------------------------------------------------------------
# Factories


def load_model(tp_size=1, patch=None):
    """The serving model with the tiny-llama weights, in eval mode, at EKKA_DTYPE. `patch(model)` runs
    before the weights are loaded (bug cases swap a module's class there)."""
    model = LlamaForCausalLM(weights.config(), tp_size=tp_size)
    if patch is not None:
        patch(model)
    model.load_weights(weights.hf_state_dict())
    return model.eval().to(weights.dtype_from_env())


def serving_steps():
    """Prefill the 16 prompt tokens (positions 0..15), then decode NEXT_TOKEN at position 16."""
    prompt = weights.input_ids()
    return [
        {"input_ids": prompt, "positions": torch.arange(prompt.numel())},
        {"input_ids": torch.tensor([weights.NEXT_TOKEN]), "positions": torch.tensor([prompt.numel()])},
    ]


def swap_class(module, cls):
    """Makes an existing module an instance of `cls` (a subclass of its class), keeping its state."""
    if not issubclass(cls, type(module)):
        raise TypeError(f"{cls.__name__} is not a subclass of {type(module).__name__}")
    module.__class__ = cls
    return module


def build():
    return load_model(tp_size=1), serving_steps()


def build_tp2():
    return load_model(tp_size=2), serving_steps()
