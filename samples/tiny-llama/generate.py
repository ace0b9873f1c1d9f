"""Regenerates the tiny-llama sample: reference.onnx, input.json, and per bug case target.onnx and
expected.json (ground truth read with `inspect` from the case's own source).

Run with Debian's interpreter, which has python3-torch:  /usr/bin/python3 samples/tiny-llama/generate.py
Deterministic: the same torch build writes the same weights and the same graphs.
"""

import importlib.util
import inspect
import json
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from modeling_llama import LlamaConfig, LlamaForCausalLM  # noqa: E402

SEED = 1234
SEQ_LEN = 16
OPSET = 17

# case id -> (module path of the planted bug, class holding it, taxonomy cause id)
BUG_CASES = {
    "rope-interleaved": ("model.layers.2.self_attn", "InterleavedRotaryAttention", "model/rope"),
    "final-norm-eps": ("model.norm", "FusedFinalRMSNorm", "model/norm"),
    "causal-mask-off-by-one": ("model", "LookaheadMaskModel", "model/attention"),
    "rmsnorm-kernel": ("model.layers.1.input_layernorm", "KernelRMSNorm", "kernel/implementation"),
}

# case id -> (CUDA source in the case folder, the __global__ function holding the planted bug)
KERNEL_CASES = {
    "rmsnorm-kernel": ("csrc/layernorm_kernels.cu", "rms_norm_kernel"),
}


def build_reference(config):
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
    return model.eval()


def example_inputs():
    generator = torch.Generator().manual_seed(SEED + 1)
    input_ids = torch.randint(0, LlamaConfig.vocab_size, (1, SEQ_LEN), generator=generator)
    position_ids = torch.arange(SEQ_LEN)[None, :]
    return input_ids, position_ids


def export(model, inputs, path):
    torch.onnx.export(
        model,
        inputs,
        path,
        input_names=["input_ids", "position_ids"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "position_ids": {0: "batch", 1: "sequence"},
            "logits": {0: "batch", 1: "sequence"},
        },
        opset_version=OPSET,
        do_constant_folding=True,
    )


def load_case_module(case_dir):
    spec = importlib.util.spec_from_file_location(
        "modeling_target_" + os.path.basename(case_dir).replace("-", "_"),
        os.path.join(case_dir, "modeling_target.py"),
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # inspect finds the source through sys.modules
    sys.path.insert(0, case_dir)  # a case may import its own helper modules (custom_ops.py)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(case_dir)
    return module


def kernel_of(case_dir, file, name):
    """The line naming a __global__ function in a case's CUDA source."""
    with open(os.path.join(case_dir, file)) as handle:
        text = handle.read()
    match = re.search(r"__global__\s+void\s+(" + re.escape(name) + r")\s*\(", text)
    return {"file": file, "line": text[: match.start(1)].count("\n") + 1, "symbol": name}


def source_of(cls, relative_to):
    """The line a developer should land on: the class's own forward, else the class statement."""
    target = cls.forward if "forward" in cls.__dict__ else cls
    _, line = inspect.getsourcelines(target)
    file = os.path.relpath(inspect.getsourcefile(target), relative_to)
    return {"file": file.replace(os.sep, "/"), "line": line}


def write_json(path, value):
    with open(path, "w") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")


def main():
    config = LlamaConfig()
    reference = build_reference(config)
    inputs = example_inputs()
    export(reference, inputs, os.path.join(HERE, "reference.onnx"))
    input_ids, position_ids = inputs
    write_json(
        os.path.join(HERE, "input.json"),
        {
            "input_ids": {"dtype": "int64", "shape": list(input_ids.shape), "data": input_ids.flatten().tolist()},
            "position_ids": {"dtype": "int64", "shape": list(position_ids.shape), "data": position_ids.flatten().tolist()},
        },
    )
    with torch.no_grad():
        reference_logits = reference(*inputs)

    for case_id, (module_path, class_name, cause) in BUG_CASES.items():
        case_dir = os.path.join(HERE, "cases", case_id)
        case_module = load_case_module(case_dir)
        target = case_module.TargetForCausalLM(config)
        target.load_state_dict(reference.state_dict())
        target.eval()
        with torch.no_grad():
            drift = (target(*inputs) - reference_logits).norm() / reference_logits.norm()
        print(f"{case_id}: relative logits error {drift.item():.3e}")
        export(target, inputs, os.path.join(case_dir, "target.onnx"))
        buggy_class = getattr(case_module, class_name)
        expected = {"module": module_path, "source": source_of(buggy_class, case_dir), "cause": cause}
        if case_id in KERNEL_CASES:
            expected["kernel"] = kernel_of(case_dir, *KERNEL_CASES[case_id])
        write_json(os.path.join(case_dir, "expected.json"), expected)


if __name__ == "__main__":
    main()
