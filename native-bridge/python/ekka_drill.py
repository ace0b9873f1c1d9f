"""Drill-down: the tensor operations inside a module, each with the statement that called it.

A drilled module runs once more on the arguments the reference saved for its first call (the same
file grafts read, ``--graft-save``), under a ``TorchFunctionMode`` that sees every torch function
and tensor method the module's code calls (torch 1.13 and later). Each floating-point result is
recorded as ``<module>#1/op.<k>`` (``op.<k>.<j>`` for the j-th tensor of a tuple), with:

- ``op``: what was called (``F.linear``, ``Tensor.mul``, ``torch.rsqrt``);
- ``statement``: the innermost Python frame outside torch itself, i.e. the line of the model's
  code that made the call (a ``nn.Linear``'s matmul lands on the line that calls the layer);
- ``inputs``: the earlier op records among its arguments, and ``arg.<path>`` for the module's
  own arguments.

Ops called inside another op (a functional's body) are not seen: the mode steps aside while an op
runs, so what is recorded is what the module's code wrote, one call per op.
"""

import os
import sys
import weakref

# Calls that only read metadata or make no new values worth comparing.
SKIPPED = {"size", "dim", "numel", "stride", "is_contiguous", "data_ptr", "element_size"}


def op_name(func):
    """`F.linear`, `Tensor.mul`, `torch.rsqrt`: what the model's code called."""
    name = getattr(func, "__name__", None) or repr(func)
    if name == "__get__":  # a tensor property (.T, .mT)
        owner = getattr(func, "__self__", None)
        return f"Tensor.{getattr(owner, '__name__', 'property')}"
    module = getattr(func, "__module__", None) or ""
    if module.startswith("torch.nn.functional") or module == "torch._C._nn":
        return f"F.{name}"
    qualified = getattr(func, "__qualname__", "")
    if module == "torch._tensor" or qualified.startswith(("Tensor.", "TensorBase.", "_TensorBase.")):
        return f"Tensor.{name}"
    return f"torch.{name}" if module.startswith("torch") else name


class TensorNames:
    """Which record a tensor is: the same tensor object, not changed in place since it was
    recorded (its version counter moves with every in-place op), holds that record's values."""

    def __init__(self):
        # id(tensor) -> (weak reference, record name, version).
        self.known = {}

    def remember(self, tensor, name):
        try:
            self.known[id(tensor)] = (weakref.ref(tensor), name, tensor._version)
        except TypeError:
            pass

    def name_of(self, tensor):
        entry = self.known.get(id(tensor))
        if entry is None or entry[0]() is not tensor or entry[2] != tensor._version:
            return None
        return entry[1]


class Statements:
    """The innermost frame of the model's own code: not torch's, not this helper's."""

    def __init__(self, torch):
        self.skipped = (
            os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
            os.path.dirname(os.path.abspath(__file__)) + os.sep,
        )
        self.files = {}

    def of_caller(self):
        frame = sys._getframe(2)
        while frame is not None:
            file = frame.f_code.co_filename
            if file not in self.files:
                absolute = os.path.abspath(file)
                own = not file.startswith("<") and not absolute.startswith(self.skipped)
                self.files[file] = absolute if own else None
            if self.files[file] is not None:
                return {"file": self.files[file], "line": frame.f_lineno}
            frame = frame.f_back
        return None


def op_recorder(torch, walk, statements, record):
    """A TorchFunctionMode that passes each call's tensor results to
    ``record(op, statement, inputs, outputs)``; returns it with a `name_args` method that names the
    module's own arguments before the run."""
    base = torch.overrides.TorchFunctionMode

    class OpRecorder(base):
        def __init__(self):
            super().__init__()
            self.names = TensorNames()

        def name_args(self, args, kwargs):
            for path, tensor in walk(torch, args):
                self.names.remember(tensor, f"arg.{path}")
            for path, tensor in walk(torch, kwargs):
                self.names.remember(tensor, f"arg.{path}")

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            # Read before the call: an in-place op changes its input's version.
            inputs = []
            for _, tensor in list(walk(torch, args)) + list(walk(torch, kwargs)):
                name = self.names.name_of(tensor)
                if name is not None and name not in inputs:
                    inputs.append(name)
            result = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            if name in SKIPPED:
                return result
            outputs = [
                (path, tensor)
                for path, tensor in walk(torch, result)
                if tensor.is_floating_point() or tensor.dtype == torch.bool
            ]
            if outputs:
                names = record(op_name(func), statements.of_caller(), inputs, outputs)
                for (_, tensor), recorded in zip(outputs, names):
                    self.names.remember(tensor, recorded)
            return result

    return OpRecorder()


def drill(torch, model, inputs, modules, convert, walk, capture):
    """Runs each module on its saved first-call arguments, recording its ops through
    `capture.capture`; returns the modules that could not run (no saved arguments, another
    signature)."""
    statements = Statements(torch)
    by_path = dict(model.named_modules())
    failed = []
    for path in modules:
        module = by_path.get(path)
        if module is None or path not in inputs:
            failed.append(path)
            continue
        args, kwargs = inputs[path]
        args, kwargs = convert(args), convert(kwargs)
        count = [0]

        def record(op, statement, reads, outputs, path=path, module=module, count=count):
            k = count[0]
            count[0] += 1
            names = []
            for output_path, tensor in outputs:
                suffix = f"op.{k}" + (f".{output_path}" if output_path else "")
                name = capture.capture(
                    path, module, 1, suffix, tensor, reads, extra={"op": op, "statement": statement}
                )
                names.append(name)
            return names

        recorder = op_recorder(torch, walk, statements, record)
        recorder.name_args(args, kwargs)
        try:
            with torch.no_grad(), recorder:
                module(*args, **kwargs)
        except Exception as cause:  # this run's module is another one under the same path
            print(f"ekka_capture: drill-down of {path or '(root)'} failed: {cause}", file=sys.stderr)
            failed.append(path)
    return failed
