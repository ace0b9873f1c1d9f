"""Generates the accuracy benchmark from transformers' own modeling code (bench_models.py).

    .venv/bin/python samples/hf-bench/generate.py [--out build/hf-bench] [--split dev|test|all]

Writes, per case, `cases/<id>/{ekka.json, expected.json}` (and `case.py`, `case.json` for PyTorch
captures, `target.onnx` for ONNX cases); reference models and inputs are shared under `models/`
and `inputs/`. Deterministic for a given torch build.

The plan: families Llama, Qwen2, Gemma and Mixtral (MoE); run kinds PyTorch capture, ONNX exported
with torch's dynamo exporter and with the TorchScript exporter (Mixtral: the dynamo exporter
cannot export its data-dependent expert routing, so TorchScript and PyTorch only); float32,
float16 and bfloat16 targets, with and without a low-precision reference; three prompt lengths;
target attention eager or SDPA (a kernel of its own, so modules upstream of a bug are not
bit-identical to the reference). Continuous bugs are calibrated to a strength, measured in torch
at the bug's module: relative error of the buggy target against the float32 reference, over the
same for the clean target at the same precision. Splits: dev (seeds 0, 1, 5, 6) for tuning, test
(seeds 2, 3, 4; its own placements) for the headline.
"""

import argparse
import copy
import json
import logging
import math
import os
import random
import shutil
import sys
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_models as bm  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
SPLITS = {"dev": [0, 1, 5, 6], "test": [2, 3, 4]}
STRENGTHS = [1.5, 2, 3, 5, 10, 20]
RUN_KINDS = ["pytorch", "onnx-dynamo", "onnx-torchscript"]
PRESETS = {"llama": "llama", "qwen2": "qwen2", "gemma": "gemma", "mixtral": "mistral"}
LAYERS = bm.COMMON["num_hidden_layers"]

CONTINUOUS = ["rows-scaled", "norm-channels", "norm-epsilon", "attention-scale", "rope-theta",
              "residual-scaled"]
DISCRETE = {
    "llama": ["activation-swapped", "residual-missing", "rope-position-offset", "norm-low-precision"],
    "qwen2": ["bias-dropped", "activation-swapped", "residual-missing", "norm-low-precision"],
    "gemma": ["norm-without-offset", "embedding-scale-missing", "activation-swapped",
              "rope-position-offset"],
    "mixtral": ["router-not-renormalised", "activation-swapped", "residual-missing",
                "norm-low-precision"],
}
# Bugs that exist only when the target computes at low precision inside PyTorch (an ONNX export
# is float32; the converter rounds every op alike).
PYTORCH_LOW_PRECISION_ONLY = {"norm-low-precision"}


def layer_position(layer):
    return "layer 0" if layer == 0 else "last layer" if layer == LAYERS - 1 else "middle layer"


def draw_site(rng, family, bug, tied, layer=None):
    """(module path, position label) for a bug; in `layer` when given, else a layer drawn."""
    if layer is None:
        layer = rng.randrange(LAYERS)
    prefix = f"model.layers.{layer}"
    if bug == "rows-scaled":
        if family == "mixtral":
            choices = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                       "self_attn.o_proj", "mlp.experts"]
        else:
            choices = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                       "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
        ends = [] if tied else ["model.embed_tokens", "lm_head"]
        pick = rng.choice(choices + ends)
        if pick == "model.embed_tokens":
            return pick, "embedding"
        if pick == "lm_head":
            return pick, "lm_head"
        return f"{prefix}.{pick}", layer_position(layer)
    if bug in ("norm-channels", "norm-epsilon", "norm-low-precision", "norm-without-offset"):
        pick = rng.choice(["input_layernorm", "post_attention_layernorm", "final"])
        if pick == "final":
            return "model.norm", "final norm"
        return f"{prefix}.{pick}", layer_position(layer)
    if bug == "attention-scale":
        return f"{prefix}.self_attn", layer_position(layer)
    if bug in ("rope-theta", "rope-position-offset"):
        return "model.rotary_emb", "rotary"
    if bug in ("residual-scaled", "residual-missing"):
        return prefix, f"own code ({layer_position(layer)})"
    if bug == "activation-swapped":
        act = "mlp.experts.act_fn" if family == "mixtral" else "mlp.act_fn"
        return f"{prefix}.{act}", layer_position(layer)
    if bug == "embedding-scale-missing":
        return "model.embed_tokens", "embedding"
    if bug == "bias-dropped":
        return f"{prefix}.self_attn.{rng.choice(['q_proj', 'k_proj', 'v_proj'])}", layer_position(layer)
    if bug == "router-not-renormalised":
        return f"{prefix}.mlp.gate", layer_position(layer)
    raise ValueError(bug)


# Strength: measured at the bug's module in torch.


def site_outputs(model, site, ids, dtype):
    """Each floating tensor the module at `site` returned, flattened, per output position, over
    all of its calls (a module called several times contributes each call)."""
    captured = {}

    def hook(_module, _inputs, output):
        items = output if isinstance(output, (tuple, list)) else [output]
        for position, item in enumerate(items):
            if torch.is_tensor(item) and item.is_floating_point():
                captured.setdefault(position, []).append(item.detach().double().reshape(-1))

    model = model.to(dtype)
    handle = model.get_submodule(site).register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        handle.remove()
    return {position: torch.cat(parts) for position, parts in captured.items()}


def kept_outputs(spec, site):
    """The output positions of the module at `site` that the case's run kind can compare, or None
    for all. An ONNX graph keeps no value the model discards: eager attention's weights (output 1)
    are dropped by the decoder layer, so an exported attention has only its output."""
    if spec["runKind"] != "pytorch" and site.endswith(".self_attn"):
        return {0}
    return None


class StrengthMeter:
    """Per output of the bug's module that the run kind compares, its relative error against the
    float32 reference over the clean target's (each output compared on its own, as the diagnosis
    compares them); the strength is the largest."""

    def __init__(self, spec, dtype_name):
        self.spec = spec
        self.dtype = bm.DTYPES[dtype_name]
        self.ids = bm.tokens(spec)
        self.reference = bm.reference_model(spec)
        clean_spec = {**spec, "bugs": []}
        self.clean = bm.target_model(clean_spec)
        self._cache = {}

    def _baseline(self, site):
        if site not in self._cache:
            ref = site_outputs(copy.deepcopy(self.reference), site, self.ids, torch.float32)
            clean = site_outputs(copy.deepcopy(self.clean), site, self.ids, self.dtype)
            kept = kept_outputs(self.spec, site)
            noise = {p: bm.relative_l2(clean[p], ref[p]) for p in ref
                     if p in clean and clean[p].shape == ref[p].shape
                     and (kept is None or p in kept)}
            self._cache[site] = (ref, noise)
        return self._cache[site]

    def strength(self, bug):
        ref, noise = self._baseline(bug["site"])
        model = bm.plant(copy.deepcopy(self.clean), self.spec["family"], [bug], self.spec["seed"])
        outs = site_outputs(model, bug["site"], self.ids, self.dtype)
        ratios = []
        # Outputs one side leaves out (SDPA returns no attention weights) are not compared.
        for position in noise:
            out, expected = outs.get(position), ref[position]
            if out is None or out.shape != expected.shape:
                return math.inf
            error = bm.relative_l2(out, expected)
            floor = noise.get(position, 0.0)
            ratios.append(error / floor if floor > 0 else (math.inf if error > 0 else 1.0))
        return max(ratios) if ratios else math.inf


def calibrate(meter, bug, wanted):
    """The bug's alpha whose measured strength is closest to `wanted` (bisection in log space)."""
    if bug["bug"] == "norm-epsilon":
        low, high = math.log10(2e-6), 0.0
        value = lambda x: 10 ** x  # noqa: E731
    else:
        low, high = math.log10(1e-6), math.log10(0.9 if bug["bug"] == "rows-scaled" else 4.0)
        value = lambda x: 10 ** x  # noqa: E731
    best = None
    for _ in range(16):
        middle = (low + high) / 2
        measured = meter.strength({**bug, "alpha": value(middle)})
        if best is None or abs(math.log(measured / wanted)) < abs(math.log(best[1] / wanted)):
            best = (value(middle), measured)
        if measured < wanted:
            low = middle
        else:
            high = middle
    return best


# Writing cases.


def export(model, path, exporter, ids):
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = bm.Logits(model.float())
        if exporter == "dynamo":
            torch.onnx.export(wrapped, (ids,), path, dynamo=True, input_names=["input_ids"],
                              output_names=["logits"], external_data=False, verbose=False)
        else:
            torch.onnx.export(wrapped, (ids,), path, dynamo=False, input_names=["input_ids"],
                              output_names=["logits"])
    data = path + ".data"
    if os.path.exists(data):
        raise RuntimeError(f"{path}: external data not expected for a tiny model")


def write_json(path, value):
    with open(path, "w") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")


def pytorch_config(spec, precision, low_precision_reference):
    python = "../../../../.venv/bin/python"
    side = lambda function, dtype: {  # noqa: E731
        "kind": "pytorch", "factory": f"case.py:{function}", "dtype": dtype, "python": python}
    config = {"name": spec["id"], "target": side("target", precision),
              "reference": side("reference", "float32"),
              "mapping": {"preset": PRESETS[spec["family"]]}}
    if precision != "float32":
        # Left out, the diagnosis would derive the low-precision reference itself.
        config["referenceLowPrecision"] = (side("reference", precision)
                                           if low_precision_reference else False)
    return config


CASE_PY = '''"""Factories of benchmark case {id}: both sides built from case.json by bench_models."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../../../samples/hf-bench"))
import bench_models  # noqa: E402

with open(os.path.join(HERE, "case.json")) as handle:
    SPEC = json.load(handle)


def target():
    return bench_models.factory(SPEC, "target")


def reference():
    return bench_models.factory(SPEC, "reference")
'''


def write_case(out, spec, expected):
    case_dir = os.path.join(out, "cases", spec["id"])
    os.makedirs(case_dir, exist_ok=True)
    precision, run_kind = spec["precision"], spec["runKind"]
    ids = bm.tokens(spec)
    input_file = os.path.join(out, "inputs", f"{spec['input']}.json")
    if not os.path.exists(input_file):
        os.makedirs(os.path.dirname(input_file), exist_ok=True)
        write_json(input_file, {"input_ids": {"dtype": "int64", "shape": list(ids.shape),
                                              "data": ids.reshape(-1).tolist()}})
    if run_kind == "pytorch":
        write_json(os.path.join(case_dir, "case.json"), spec)
        with open(os.path.join(case_dir, "case.py"), "w") as handle:
            handle.write(CASE_PY.format(id=spec["id"]))
        config = pytorch_config(spec, precision, spec["lowPrecisionReference"])
    else:
        exporter = run_kind.split("-")[1]
        target_exporter = spec.get("targetExporter", exporter)
        export(bm.target_model(spec), os.path.join(case_dir, "target.onnx"), target_exporter, ids)
        reference_name = f"{spec['family']}-s{spec['seed']}-{exporter}-{spec['input']}.onnx"
        export(bm.reference_model(spec), os.path.join(out, "models", reference_name), exporter, ids)
        target = {"model": "target.onnx"}
        if precision != "float32":
            target["precision"] = precision
        if spec.get("optimization"):
            target["optimization"] = spec["optimization"]
        config = {"name": spec["id"], "target": target,
                  "reference": {"model": f"../../models/{reference_name}"},
                  "input": f"../../inputs/{spec['input']}.json"}
        if not spec["lowPrecisionReference"] and precision != "float32":
            config["referenceLowPrecision"] = False
    config = {"$schema": "../../../../native-bridge/diagnosis/ekka.schema.json", **config}
    write_json(os.path.join(case_dir, "ekka.json"), config)
    write_json(os.path.join(case_dir, "expected.json"), expected)


def plan_split(split):
    """Every case of a split, as (spec, expected) before strengths are measured."""
    cases = []
    for seed in SPLITS[split]:
        rng = random.Random(f"{split}-{seed}")
        for family in bm.FAMILIES:
            tied = family == "gemma"
            kinds = [k for k in RUN_KINDS if not (family == "mixtral" and k == "onnx-dynamo")]
            for run_kind in kinds:
                pytorch = run_kind == "pytorch"
                base = {"family": family, "seed": seed, "runKind": run_kind, "split": split}

                def common(**extra):
                    precision = rng.choices(["bfloat16", "float16", "float32"],
                                            [5, 3, 2] if pytorch else [2, 6, 2])[0]
                    return {**base, "precision": precision,
                            "lowPrecisionReference": rng.random() < 0.75,
                            "attention": rng.choice(["eager", "sdpa"]),
                            "input": rng.choice(list(bm.INPUTS)), **extra}

                # Two continuous bugs at swept strengths.
                for _ in range(2):
                    bug = rng.choice(CONTINUOUS)
                    site, position = draw_site(rng, family, bug, tied)
                    strength = rng.choice(STRENGTHS)
                    cases.append(common(bugs=[{"bug": bug, "site": site, "position": position,
                                               "wanted": strength}]))
                # One discrete bug, at its own (natural) strength.
                options = [b for b in DISCRETE[family]
                           if pytorch or b not in PYTORCH_LOW_PRECISION_ONLY]
                bug = rng.choice(options)
                site, position = draw_site(rng, family, bug, tied)
                spec = common(bugs=[{"bug": bug, "site": site, "position": position}])
                if bug == "rope-position-offset":
                    spec["input"] = "long"
                if bug in PYTORCH_LOW_PRECISION_ONLY and spec["precision"] == "float32":
                    spec["precision"] = "bfloat16"
                cases.append(spec)
                # One control.
                control_kinds = ["precision-only", "fused-rms-norm"]
                if not pytorch:
                    control_kinds += ["optimization-all"]
                    if family != "mixtral":
                        control_kinds += ["exporter-swap"]
                control = rng.choice(control_kinds)
                spec = common(bugs=[], control=control)
                if spec["precision"] == "float32":
                    spec["precision"] = "float16"
                if control == "fused-rms-norm":
                    spec["controls"] = ["fused-rms-norm"]
                elif control == "optimization-all":
                    spec["optimization"] = "all"
                elif control == "exporter-swap":
                    spec["targetExporter"] = "torchscript" if run_kind == "onnx-dynamo" else "dynamo"
                cases.append(spec)
            # Two bugs, one case per seed and family, on a run kind in turn.
            run_kind = kinds[(seed + len(cases)) % len(kinds)]
            first, second = sorted(rng.sample(range(LAYERS), 2))
            bugs = []
            for layer in (first, second):
                bug = rng.choice(["rows-scaled", "attention-scale"])
                site, position = draw_site(rng, family, bug, True, layer)
                if not site.startswith("model.layers."):
                    site, position = draw_site(rng, family, "attention-scale", True, layer)
                    bug = "attention-scale"
                bugs.append({"bug": bug, "site": site, "position": position, "wanted": 10})
            cases.append({**base, "runKind": run_kind, "precision": "bfloat16" if run_kind ==
                          "pytorch" else "float16", "lowPrecisionReference": True,
                          "attention": "eager", "input": "medium", "bugs": bugs})
    for index, spec in enumerate(cases):
        bugs = spec["bugs"]
        label = spec.get("control") or "+".join(b["bug"] for b in bugs)
        spec["id"] = (f"{split}-{index:03d}-{spec['family']}-{spec['runKind']}-{label}")
    return cases


def measure(spec):
    """Calibrates continuous bugs and records every bug's measured strength."""
    precision = spec["precision"]
    # A float32 target's noise is zero where the kernels agree: strengths are then measured
    # against float16 noise, and marked so.
    yardstick = precision if precision != "float32" else "float16"
    meter = StrengthMeter(spec, yardstick)
    for bug in spec["bugs"]:
        if "wanted" in bug:
            bug["alpha"], bug["strength"] = calibrate(meter, bug, bug["wanted"])
        else:
            bug["strength"] = meter.strength(bug)
        if not math.isfinite(bug["strength"]):
            bug["strength"] = None
    spec["strengthYardstick"] = yardstick


def expected_of(spec):
    bugs = spec["bugs"]
    first = bugs[0] if bugs else None
    strength = first["strength"] if first else None
    return {
        "module": first["site"] if first else None,
        "cause": bm.BUGS[first["bug"]][1] if first else None,
        "split": spec["split"],
        "family": spec["family"],
        "runKind": spec["runKind"],
        "precision": spec["precision"],
        "lowPrecisionReference": spec["lowPrecisionReference"] and spec["precision"] != "float32",
        "attention": spec["attention"],
        "input": spec["input"],
        "position": first["position"] if first else None,
        "strength": strength if spec["strengthYardstick"] == spec["precision"] else None,
        "bugs": [{k: b[k] for k in ("bug", "site", "position", "strength", "alpha") if k in b}
                 for b in bugs],
        "control": spec.get("control"),
        "note": ("two bugs: the first in data order is expected first" if len(bugs) > 1 else
                 f"strength measured against {spec['strengthYardstick']} noise"),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(REPO, "build", "hf-bench"))
    parser.add_argument("--split", choices=["dev", "test", "all"], default="all")
    parser.add_argument("--only", help="generate only case ids containing this text")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    splits = list(SPLITS) if args.split == "all" else [args.split]
    for split in splits:
        cases = plan_split(split)
        if args.only:
            cases = [c for c in cases if args.only in c["id"]]
        for spec in cases:
            case_dir = os.path.join(args.out, "cases", spec["id"])
            if os.path.exists(os.path.join(case_dir, "expected.json")):
                continue
            shutil.rmtree(case_dir, ignore_errors=True)
            measure(spec)
            write_case(args.out, spec, expected_of(spec))
            strengths = ", ".join(f"{b['strength']:.3g}" if b["strength"] else "n/a"
                                  for b in spec["bugs"])
            print(f"{spec['id']}  {strengths}", flush=True)
        print(f"{split}: {len(cases)} cases")


if __name__ == "__main__":
    main()
