"""The accuracy benchmark's models and bugs: transformers' own modeling code, tiny random configs.

A case is a JSON spec (see generate.py): a family, a seed, the target's precision and attention
kernel, and the bugs planted in the target. `factory(spec, side)` builds either side for the
PyTorch capture helper; generate.py uses the same functions to export ONNX models and to measure
each bug's strength. Run with the repository's .venv (torch 2.13, transformers 5.17).
"""

import math
import types

import torch
from torch import nn
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=128,
)

FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
    "gemma": (GemmaConfig, GemmaForCausalLM, {"hidden_activation": "gelu_pytorch_tanh"}),
    "mixtral": (
        MixtralConfig,
        MixtralForCausalLM,
        {"num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 64},
    ),
}

# Prompts of three lengths (token ids below the vocabulary size).
INPUTS = {
    "short": [3, 17, 42, 7, 99, 5],
    "medium": [3, 17, 42, 7, 99, 5, 61, 28, 11, 80, 2],
    "long": [9, 201, 17, 42, 7, 99, 5, 61, 28, 11, 80, 2, 33, 150, 64, 77, 120],
}

# Position-dependent bugs act on tokens from this position on.
FROM_POSITION = 8

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def build(family, seed, attention="eager"):
    """The clean model of a family: random weights from `seed`, norms drawn around their identity
    (a trained checkpoint's norm weights are not all 1, and a Gemma norm's not all 0)."""
    config_class, model_class, extra = FAMILIES[family]
    torch.manual_seed(seed)
    config = config_class(**{**COMMON, **extra}, attn_implementation=attention)
    if family == "mixtral":
        config._experts_implementation = "eager"
    model = model_class(config).eval()
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                centre = 0.0 if family == "gemma" else 1.0
                parameter.copy_(centre + 0.3 * torch.randn(parameter.shape, generator=generator))
            elif name.endswith(".bias"):
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


def norm_epsilon_attribute(norm):
    return "eps" if hasattr(norm, "eps") else "variance_epsilon"


def _channels(size, seed, share=0.25):
    generator = torch.Generator().manual_seed(seed)
    count = max(1, int(size * share))
    return torch.randperm(size, generator=generator)[:count]


# Bugs. Each plants itself into `model` at `site` (a dotted module path of the causal-LM model);
# `alpha` is the strength knob of a continuous bug (ignored by a discrete one).


def rows_scaled(model, site, alpha, seed, family):
    """A quarter of the output channels of a weight carry a wrong scale (a dequantization scale
    applied to the wrong channels, a TP shard loaded with the wrong factor)."""
    module = model.get_submodule(site)
    with torch.no_grad():
        if isinstance(module, nn.Embedding):
            columns = _channels(module.weight.shape[1], seed)
            module.weight[:, columns] *= 1 + alpha
        elif hasattr(module, "down_proj") and isinstance(module.down_proj, nn.Parameter):
            # Fused experts: one expert's down projection.
            expert = seed % module.down_proj.shape[0]
            rows = _channels(module.down_proj.shape[1], seed)
            module.down_proj[expert, rows] *= 1 + alpha
        else:
            rows = _channels(module.weight.shape[0], seed)
            module.weight[rows] *= 1 + alpha


def norm_channels(model, site, alpha, seed, family):
    """A norm's weight is off on a quarter of its channels (a checkpoint key read from the wrong
    layer, a folded scale)."""
    norm = model.get_submodule(site)
    columns = _channels(norm.weight.shape[0], seed)
    with torch.no_grad():
        if family == "gemma":
            norm.weight[columns] = (1 + norm.weight[columns]) * (1 + alpha) - 1
        else:
            norm.weight[columns] *= 1 + alpha


def norm_epsilon(model, site, alpha, seed, family):
    """The norm's epsilon is read from the wrong config key: `alpha` is the epsilon used."""
    norm = model.get_submodule(site)
    setattr(norm, norm_epsilon_attribute(norm), alpha)


def attention_scale(model, site, alpha, seed, family):
    """Softmax scale off by a factor (head_dim taken from the wrong config key)."""
    attention = model.get_submodule(site)
    attention.scaling = attention.scaling * (1 + alpha)


def rope_theta(model, site, alpha, seed, family):
    """The rotary base is off by a factor (rope_theta read from the wrong key, a scaling dropped)."""
    rotary = model.get_submodule(site)
    base = model.config.rope_parameters["rope_theta"] * (1 + alpha)
    dim = rotary.inv_freq.shape[0] * 2
    with torch.no_grad():
        rotary.inv_freq.copy_(1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))


def rope_position_offset(model, site, alpha, seed, family):
    """From token FROM_POSITION on, positions are off by one (a chunk offset added twice)."""
    rotary = model.get_submodule(site)
    original = rotary.forward

    def forward(self, x, position_ids):
        return original(x, position_ids + (position_ids >= FROM_POSITION).to(position_ids.dtype))

    rotary.forward = types.MethodType(forward, rotary)


def residual_scaled(model, site, alpha, seed, family):
    """The decoder layer's own code scales the attention residual (a fused add that reads a
    pre-scaled buffer): no child module sees it, only the layer's output."""
    _replace_layer_forward(model.get_submodule(site), residual_factor=1 + alpha)


def residual_missing(model, site, alpha, seed, family):
    """The decoder layer's own code drops the residual add after attention."""
    _replace_layer_forward(model.get_submodule(site), residual_factor=0.0)


def _replace_layer_forward(layer, residual_factor):
    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False, position_embeddings=None, **kwargs):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states, _ = self.self_attn(
            hidden_states=hidden_states,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = residual * residual_factor + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states

    layer.forward = types.MethodType(forward, layer)


def activation_swapped(model, site, alpha, seed, family):
    """The MLP's activation is another one: GELU for SiLU, exact GELU for Gemma's tanh GELU."""
    parent, _, name = site.rpartition(".")
    replacement = nn.GELU() if family == "gemma" else nn.GELU(approximate="tanh")
    setattr(model.get_submodule(parent), name, replacement)


def norm_without_offset(model, site, alpha, seed, family):
    """A Gemma norm scales by w where the checkpoint means (1 + w)."""
    norm = model.get_submodule(site)

    def forward(self, x):
        return (self._norm(x.float()) * self.weight.float()).type_as(x)

    norm.forward = types.MethodType(forward, norm)


def norm_low_precision(model, site, alpha, seed, family):
    """The norm's mean of squares runs at the activations' precision (the fp32 upcast dropped)."""
    norm = model.get_submodule(site)
    epsilon = getattr(norm, norm_epsilon_attribute(norm))
    offset = 1.0 if family == "gemma" else 0.0

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return (x * torch.rsqrt(variance + epsilon)) * (offset + self.weight).to(x.dtype)

    norm.forward = types.MethodType(forward, norm)


def embedding_scale_missing(model, site, alpha, seed, family):
    """Gemma's embedding is not multiplied by sqrt(hidden_size)."""
    embedding = model.get_submodule(site)
    with torch.no_grad():
        embedding.embed_scale.fill_(1.0)
    embedding.scalar_embed_scale = 1.0


def bias_dropped(model, site, alpha, seed, family):
    """A projection's bias is not loaded (Qwen2's qkv bias)."""
    with torch.no_grad():
        model.get_submodule(site).bias.zero_()


def router_not_renormalised(model, site, alpha, seed, family):
    """The MoE router's top-k weights are not renormalised to sum to one (norm_topk_prob misread)."""
    router = model.get_submodule(site)

    def forward(self, hidden_states):
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        logits = nn.functional.linear(hidden_states, self.weight)
        probabilities = torch.softmax(logits.float(), dim=-1)
        top_value, top_index = torch.topk(probabilities, self.top_k, dim=-1)
        return logits, top_value, top_index

    router.forward = types.MethodType(forward, router)


# Fused or re-ordered implementations of the same computation, for controls.


def fused_rms_norm(model, seed, family):
    """Every norm runs torch's fused `rms_norm` instead of the eager formula (for the TorchScript
    exporter, which has no rms_norm, the same norm computed through the L2 norm)."""
    offset = 1.0 if family == "gemma" else 0.0
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            epsilon = getattr(module, norm_epsilon_attribute(module))

            def forward(self, x, epsilon=epsilon):
                weight = (offset + self.weight.float()) if offset else self.weight
                if torch.jit.is_tracing():
                    # The TorchScript exporter has no rms_norm: the same norm through the L2 norm.
                    x32 = x.float()
                    scale = torch.linalg.vector_norm(x32, dim=-1, keepdim=True) / math.sqrt(x.shape[-1])
                    out = x32 / torch.sqrt(scale * scale + epsilon)
                else:
                    out = nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=epsilon)
                return (out * weight.float()).to(x.dtype)

            module.forward = types.MethodType(forward, module)


# name: (function, cause, continuous, probe alpha for calibration or the discrete value)
BUGS = {
    "rows-scaled": (rows_scaled, "numerics/quantization", True),
    "norm-channels": (norm_channels, "model/norm", True),
    "norm-epsilon": (norm_epsilon, "model/norm", True),
    "attention-scale": (attention_scale, "model/attention", True),
    "rope-theta": (rope_theta, "model/rope", True),
    "residual-scaled": (residual_scaled, "model/residual", True),
    "rope-position-offset": (rope_position_offset, "model/rope", False),
    "residual-missing": (residual_missing, "model/residual", False),
    "activation-swapped": (activation_swapped, "model/activation", False),
    "norm-without-offset": (norm_without_offset, "model/norm", False),
    "norm-low-precision": (norm_low_precision, "numerics/precision", False),
    "embedding-scale-missing": (embedding_scale_missing, "model/config", False),
    "bias-dropped": (bias_dropped, "model/weights", False),
    "router-not-renormalised": (router_not_renormalised, "model/config", False),
}

CONTROLS = {"fused-rms-norm": fused_rms_norm}


def plant(model, family, bugs, seed):
    for bug in bugs:
        BUGS[bug["bug"]][0](model, bug["site"], bug.get("alpha", 0.0), seed, family)
    return model


def target_model(spec):
    model = build(spec["family"], spec["seed"], spec.get("attention", "eager"))
    for control in spec.get("controls", []):
        CONTROLS[control](model, spec["seed"], spec["family"])
    return plant(model, spec["family"], spec.get("bugs", []), spec["seed"])


def reference_model(spec):
    return build(spec["family"], spec["seed"], "eager")


def tokens(spec):
    return torch.tensor([INPUTS[spec["input"]]])


def factory(spec, side):
    """(model, steps) for the capture helper; the helper casts the model to EKKA_DTYPE."""
    model = target_model(spec) if side == "target" else reference_model(spec)
    ids = tokens(spec)
    return model, [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "use_cache": False}]


class Logits(nn.Module):
    """The logits alone, for export: the KV cache object is not an exportable output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False
        ).logits


def relative_l2(a, b):
    a, b = a.double(), b.double()
    denominator = b.norm().item()
    return (a - b).norm().item() / denominator if denominator > 0 else math.inf
