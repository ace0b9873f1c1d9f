"""Regenerates the silent-error benchmark: for every case folder holding a modeling_target.py, the
target's ONNX export (reference weights, or the case's own `load_reference_weights`), ekka.json and
expected.json. The reference model and the input are the tiny-llama sample's.

Run with Debian's interpreter, which has python3-torch:  /usr/bin/python3 samples/benchmark/generate.py
Deterministic: the same torch build writes the same files.

A case's module-level EXPECTED gives the ground truth:
  module        dotted module path of the first module whose computation is wrong (None: a control)
  cause         cause id from the taxonomy
  class         the class holding the bug: the line is its own forward, else its class statement
  marker        or: a comment marking the line that builds the wrong module in modeling_target.py
  construction  or: (file, text) the line in the tiny-llama source that builds the module whose
                weights the case's loader corrupts (the loader itself is outside any module)
  subtle        True where the error is barely above noise
  reference     "prefill" (default: the tiny-llama reference) or "decode" (its KV-cache twin from
                modeling_llama_decode.py: prefill, then one decode step, in one graph)
  precision     the target engine's precision: "float16" (default: the target runs at float16 and
                the reference at float16 is the noise yardstick) or "float32" (an fp32 engine,
                for errors below float16 noise)
"""

import importlib.util
import inspect
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tiny-llama")
sys.path.insert(0, TINY)


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect finds sources through sys.modules
    spec.loader.exec_module(module)
    return module


sample = load_module("tiny_llama_generate", os.path.join(TINY, "generate.py"))
from modeling_llama import LlamaConfig  # noqa: E402

REL_TINY = "../../../tiny-llama"


def line_containing(path, text):
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if text in line:
                return number
    raise ValueError(f"{text!r} not in {path}")


def ground_truth_source(case_dir, module, expected):
    if "class" in expected:
        return sample.source_of(getattr(module, expected["class"]), case_dir)
    if "marker" in expected:
        path = os.path.join(case_dir, "modeling_target.py")
        return {"file": "modeling_target.py", "line": line_containing(path, expected["marker"])}
    file, text = expected["construction"]
    return {"file": f"{REL_TINY}/{file}", "line": line_containing(os.path.join(TINY, file), text)}


# Reference models by EXPECTED["reference"]: the tiny-llama one, or its KV-cache twin built here.
REFERENCES = {"prefill": f"{REL_TINY}/reference.onnx", "decode": "../../reference_decode.onnx"}


def ekka_config(name, precision, reference):
    config = {
        "$schema": "../../../../native-bridge/diagnosis/ekka.schema.json",
        "name": name,
        "target": {"model": "target.onnx"},
        "reference": {"model": REFERENCES[reference]},
        "input": f"{REL_TINY}/input.json",
        "source": {"entry": "modeling_target.py:TargetForCausalLM", "searchPaths": [REL_TINY, "../.."]},
    }
    if precision != "float32":
        config["target"]["precision"] = precision
        config["referenceLowPrecision"] = {"model": REFERENCES[reference], "precision": precision}
    return config


def main():
    config = LlamaConfig()
    reference = sample.build_reference(config)
    inputs = sample.example_inputs()
    sys.path.insert(0, HERE)
    from modeling_llama_decode import CachedLlamaForCausalLM

    decode_reference = CachedLlamaForCausalLM(config)
    decode_reference.load_state_dict(reference.state_dict())
    decode_reference.eval()
    sample.export(decode_reference, inputs, os.path.join(HERE, "reference_decode.onnx"))
    with torch.no_grad():
        reference_logits = {"prefill": reference(*inputs), "decode": decode_reference(*inputs)}
    cases_dir = os.path.join(HERE, "cases")
    for case_id in sorted(os.listdir(cases_dir)):
        case_dir = os.path.join(cases_dir, case_id)
        if not os.path.exists(os.path.join(case_dir, "modeling_target.py")):
            continue  # a control written by hand (run options only)
        module = load_module("benchmark_" + case_id.replace("-", "_"), os.path.join(case_dir, "modeling_target.py"))
        expected = module.EXPECTED
        target = module.TargetForCausalLM(config)
        if hasattr(target, "load_reference_weights"):
            target.load_reference_weights(reference.state_dict())
        else:
            target.load_state_dict(reference.state_dict())
        target.eval()
        reference_kind = expected.get("reference", "prefill")
        with torch.no_grad():
            expected_logits = reference_logits[reference_kind]
            drift = ((target(*inputs) - expected_logits).norm() / expected_logits.norm()).item()
        print(f"{case_id:32s} relative logits error {drift:.3e}")
        sample.export(target, inputs, os.path.join(case_dir, "target.onnx"))
        summary = inspect.getdoc(module).splitlines()[0]
        precision = expected.get("precision", "float16")
        sample.write_json(os.path.join(case_dir, "ekka.json"), ekka_config(summary, precision, reference_kind))
        if expected["module"] is None:
            truth = {"module": None, "precision": precision, "note": summary}
        else:
            truth = {
                "module": expected["module"],
                "source": ground_truth_source(case_dir, module, expected),
                "cause": expected["cause"],
                "subtle": bool(expected.get("subtle", False)),
                "precision": precision,
                "note": summary,
            }
        sample.write_json(os.path.join(case_dir, "expected.json"), truth)


if __name__ == "__main__":
    main()
