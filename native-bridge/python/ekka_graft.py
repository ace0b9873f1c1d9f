"""Grafts: each leaf module run again, in one run, on the inputs another run gave it.

The reference side saves the inputs of every module's first call (``--graft-save FILE``);
the target and the low-precision reference load them (``--graft-from FILE``) and, after their own
steps, run each of their leaf modules on them with hooks removed. The output of such a run is
recorded as ``<module>#1/graft`` (``graft.<path>`` for an item of a tuple or dict output). Compared
with the reference's own output of that call, it is the module's own error: the error its inputs
carried in the run is gone, only what the module's code adds is left.

Grafts run leaf modules only: a parent's graft re-runs its children too, and a decision inside it
(a router's top-k) can flip on the rounding of the graft's inputs alone. The parents' arguments are
saved for drill-downs (ekka_drill), which run one module at a time on them.

A KV cache object among the arguments (a class named ``...Cache``, as transformers' are) is saved
as None: the run has filled it by the time the file is written, and a module run again on it would
attend to its own keys twice.
"""

import os
import sys


def leaf_modules(model):
    """(path, module) for every module without children, the root excluded."""
    return [
        (path, module)
        for path, module in model.named_modules()
        if path and next(module.children(), None) is None
    ]


def is_cache(value):
    return any(cls.__name__.endswith("Cache") for cls in type(value).__mro__)


def to_cpu(torch, value):
    """A detached CPU copy of every tensor in a module's arguments; other values kept, a KV
    cache left out."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: to_cpu(torch, item) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(to_cpu(torch, item) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(torch, item) for item in value)
    return None if is_cache(value) else value


def tensor_bytes(torch, value):
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(torch, item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(torch, item) for item in value)
    return 0


class InputSaver:
    """Pre-hooks that keep each module's first-call arguments, up to max_bytes in all."""

    def __init__(self, torch, max_bytes):
        self.torch = torch
        self.max_bytes = max_bytes
        self.saved = {}
        self.total_bytes = 0
        self.skipped = []

    def pre_hook_for(self, path):
        def pre_hook(module, args, kwargs=None):
            if path in self.saved or path in self.skipped:
                return
            size = tensor_bytes(self.torch, args) + tensor_bytes(self.torch, kwargs or {})
            if self.total_bytes + size > self.max_bytes:
                self.skipped.append(path)
                return
            self.total_bytes += size
            self.saved[path] = (to_cpu(self.torch, args), to_cpu(self.torch, kwargs or {}))

        return pre_hook

    def save(self, file):
        self.torch.save({"version": 1, "inputs": self.saved}, file)
        if self.skipped:
            print(
                f"ekka_capture: {len(self.skipped)} leaf modules not saved for grafts "
                f"(--graft-max-bytes {self.max_bytes} reached at {self.skipped[0]})",
                file=sys.stderr,
            )


def load_inputs(torch, file):
    if not os.path.isfile(file):
        raise FileNotFoundError(f"graft inputs not found: {file}")
    try:
        # The file is the reference helper's own (module arguments are not only tensors).
        data = torch.load(file, map_location="cpu", weights_only=False)
    except TypeError:  # torch before 1.13 has no weights_only
        data = torch.load(file, map_location="cpu")
    return data["inputs"]


def run_grafts(torch, model, file, convert, record):
    """Runs every leaf module saved in file on its saved arguments (converted for this run) and
    passes (path, module, output) to record. Returns how many could not run here (another
    signature, shapes that do not fit)."""
    inputs = load_inputs(torch, file)
    modules = dict(leaf_modules(model))
    failed = 0
    with torch.no_grad():
        for path, (args, kwargs) in inputs.items():
            module = modules.get(path)
            if module is None:
                continue
            try:
                output = module(*convert(args), **convert(kwargs))
            except Exception:  # this run's module is another one under the same path
                failed += 1
                continue
            record(path, module, output)
    return failed
