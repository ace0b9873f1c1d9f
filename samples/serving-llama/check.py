"""Checks the serving-llama sample against its reference, and its bug cases against their ground truth.

Run with Debian's interpreter, which has python3-torch:  /usr/bin/python3 samples/serving-llama/check.py

1. Weights: weights.py builds the same parameters as ../tiny-llama/generate.py.
2. Logits: the serving model (tp_size 1 and 2) against the reference run over 17 tokens: prefill logits
   against reference positions 0..15, decode logits against position 16. Max abs difference at float32
   (must be <= 1e-5) and at bfloat16 (reported, with the reference's own bfloat16 error as yardstick).
3. Cases (cases/*/target.py + expected.json): every module output of the target is compared with the
   correct serving model at the same tp_size (same code path, so correct modules match exactly at
   float32); the first divergent output, in execution order, must be the expected module (or one of
   its rank shards, `shards.r`) at the expected step; the expected source line must be the module's class statement; the bug must move
   the logits well above bfloat16 noise; a control must not diverge at all.
Exits non-zero when anything disagrees.
"""

import importlib.util
import inspect
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FP32_TOLERANCE = 1e-5  # max abs logits difference, serving vs reference, at float32
DIVERGENCE = 1e-6  # relative L2 error above which a module output counts as divergent (same code, fp32)
MIN_SIGNAL_OVER_NOISE = 5.0  # a bug's fp32 logits error / the correct model's bf16 logits error


def load(name, path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


weights = load("ekka_serving_llama_weights", os.path.join(HERE, "weights.py"))
reference = load("ekka_serving_llama_reference", os.path.join(HERE, "reference.py"))
serving = load("ekka_serving_llama", os.path.join(HERE, "serving_llama.py"))


def run(factory, dtype, capture=False):
    """Builds a factory's model with EKKA_DTYPE=dtype and runs its steps. Returns (per-step outputs as
    float32, module records {(path, call, index): tensor} in execution order, model)."""
    previous = os.environ.get("EKKA_DTYPE")
    os.environ["EKKA_DTYPE"] = dtype
    try:
        model, steps = factory()
    finally:
        if previous is None:
            del os.environ["EKKA_DTYPE"]
        else:
            os.environ["EKKA_DTYPE"] = previous
    records, calls, hooks = {}, {}, []
    if capture:
        for path, module in model.named_modules():

            def hook(module, inputs, output, path=path):
                calls[path] = calls.get(path, 0) + 1
                items = output if isinstance(output, tuple) else (output,)
                for index, item in enumerate(items):
                    if torch.is_tensor(item):
                        key = (path, calls[path], index if isinstance(output, tuple) else None)
                        records[key] = item.detach().float().clone()

            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        outputs = [model(**step).float() for step in steps]
    for handle in hooks:
        handle.remove()
    return outputs, records, model


def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def max_abs(a, b):
    return (a - b).abs().max().item()


def check_weights(failures):
    generate = load("ekka_tiny_llama_generate", os.path.join(HERE, "..", "tiny-llama", "generate.py"))
    theirs = generate.build_reference(generate.LlamaConfig()).state_dict()
    ours = weights.hf_state_dict()
    same = theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)
    print(f"weights identical to ../tiny-llama/generate.py's: {same} ({len(ours)} tensors)")
    if not same:
        failures.append("weights differ from generate.py's")


def check_logits(failures):
    ref = {dtype: run(reference.build, dtype)[0][0][0] for dtype in ("float32", "bfloat16")}
    ref32 = ref["float32"]
    split = {"prefill": slice(0, 16), "decode": slice(16, 17)}
    print("\nlogits: serving vs reference (prefill = positions 0..15, decode = position 16)")
    print(f"{'run':26s} {'step':8s} {'max abs':>10s} {'rel L2':>10s}   vs fp32 reference")
    for step, where in split.items():
        print(f"{'reference bfloat16':26s} {step:8s} {max_abs(ref['bfloat16'][where], ref32[where]):10.3e} "
              f"{rel(ref['bfloat16'][where], ref32[where]):10.3e}")
    noise = {}
    for name, factory in (("tp1", serving.build), ("tp2", serving.build_tp2)):
        for dtype in ("float32", "bfloat16"):
            outputs = run(factory, dtype)[0]
            for step_index, (step, where) in enumerate(split.items()):
                got, want = outputs[step_index], ref32[where]
                error = max_abs(got, want)
                print(f"{'serving ' + name + ' ' + dtype:26s} {step:8s} {error:10.3e} {rel(got, want):10.3e}", end="")
                if dtype == "bfloat16":
                    same_dtype = max_abs(got, ref["bfloat16"][where])
                    print(f"   (vs bf16 reference: max abs {same_dtype:.3e})")
                    noise[(name, step)] = rel(got, want)
                else:
                    print()
                    if error > FP32_TOLERANCE:
                        failures.append(f"serving {name} {step} float32 max abs {error:.3e} > {FP32_TOLERANCE}")
    return ref32, split, noise


def first_divergence(records, clean):
    for key, tensor in records.items():
        if key not in clean:
            return key, float("inf")
        if tensor.shape != clean[key].shape:
            return key, float("inf")
        error = rel(tensor, clean[key])
        if error > DIVERGENCE:
            return key, error
    return None, 0.0


def check_cases(ref32, split, noise, failures):
    cases_dir = os.path.join(HERE, "cases")
    clean = {}
    print("\ncases: first divergent module output vs the correct serving model (fp32), and logits error vs the fp32 reference")
    header = f"{'case':28s} {'tp':>2s} {'first divergent output':52s} {'step':7s} {'fp32 rel':>9s} {'bf16 rel':>9s} {'noise':>9s}"
    print(header)
    for case_id in sorted(os.listdir(cases_dir)):
        case_dir = os.path.join(cases_dir, case_id)
        if not os.path.exists(os.path.join(case_dir, "target.py")):
            continue
        with open(os.path.join(case_dir, "expected.json")) as handle:
            expected = json.load(handle)
        target = load("ekka_serving_llama_case_" + case_id.replace("-", "_"), os.path.join(case_dir, "target.py"))
        outputs, records, model = run(target.build, "float32", capture=True)
        tp = model.tp_size
        if tp not in clean:
            clean[tp] = run(serving.build if tp == 1 else serving.build_tp2, "float32", capture=True)[1]
        key, _ = first_divergence(records, clean[tp])
        problems = []
        if expected.get("tp") != tp:
            problems.append(f"expected tp {expected.get('tp')}, the factory builds tp {tp}")
        if expected["module"] is None:
            found = "none" if key is None else f"{key[0]} (call {key[1]}, output {key[2]})"
            if key is not None:
                problems.append(f"control diverges at {found}")
            bf16 = run(target.build, "bfloat16")[0]
            errors = [rel(bf16[i], ref32[where]) for i, where in enumerate(split.values())]
            print(f"{case_id:28s} {tp:2d} {found:52s} {'-':7s} {'-':>9s} {max(errors):9.3e} {max(noise[('tp' + str(tp), s)] for s in split):9.3e}")
        else:
            step_names = list(split)
            step = expected["step"]
            step_index = step_names.index(step)
            found = "none" if key is None else f"{key[0]}" + ("" if key[2] is None else f"[{key[2]}]")
            inside = key is not None and (key[0] == expected["module"] or key[0].startswith(expected["module"] + "."))
            if not inside or key[1] != step_index + 1:
                problems.append(f"first divergence {key}, expected {expected['module']} at call {step_index + 1}")
            module = dict(model.named_modules())[expected["module"]]
            cls = type(module)
            line = inspect.getsourcelines(cls)[1]
            file = os.path.relpath(inspect.getsourcefile(cls), case_dir)
            if {"file": file, "line": line} != expected["source"]:
                problems.append(f"source {file}:{line} ({cls.__name__}), expected {expected['source']}")
            where = split[step]
            fp32_error = rel(outputs[step_index], ref32[where])
            bf16_outputs = run(target.build, "bfloat16")[0]
            bf16_error = rel(bf16_outputs[step_index], ref32[where])
            step_noise = noise[("tp" + str(tp), step)]
            if fp32_error < MIN_SIGNAL_OVER_NOISE * step_noise:
                problems.append(f"logits error {fp32_error:.3e} is not clearly above bf16 noise {step_noise:.3e}")
            for other_index, other in enumerate(step_names[:step_index]):
                other_error = max_abs(outputs[other_index], ref32[split[other]])
                if other_error > FP32_TOLERANCE:
                    problems.append(f"{other} should be exact, max abs {other_error:.3e}")
            print(f"{case_id:28s} {tp:2d} {found:52s} {step:7s} {fp32_error:9.3e} {bf16_error:9.3e} {step_noise:9.3e}")
        for problem in problems:
            print(f"  FAIL {problem}")
            failures.append(f"{case_id}: {problem}")
    print("(fp32 rel / bf16 rel: relative L2 error of the target's logits at the expected step, run at that dtype,"
          " vs the fp32 reference; noise: the correct serving model's at bf16)")


def main():
    failures = []
    check_weights(failures)
    ref32, split, noise = check_logits(failures)
    check_cases(ref32, split, noise, failures)
    if failures:
        print(f"\n{len(failures)} check(s) failed:")
        for failure in failures:
            print("  " + failure)
        sys.exit(1)
    print("\nall checks passed")


if __name__ == "__main__":
    main()
