#!/usr/bin/env python3
"""Ekka's PyTorch capture helper: runs a model factory and records every module's output.

    python3 ekka_capture.py --factory FILE.py:fn [--dtype float32|bfloat16|float16]
                            [--device cpu|cuda|auto] [--dump DIR] [--max-bytes N]
                            [--graft-save FILE | --graft-from FILE]
                            [--graft-from FILE --drill MODULE ...]

The factory is a function without arguments returning ``(model, steps)``: an ``nn.Module`` and a
list of keyword-argument dicts (a single dict is one step), each run in order as ``model(**step)``
under ``torch.no_grad()``. ``EKKA_DTYPE`` and ``EKKA_DEVICE`` are set before the factory file is
imported, so it can build its inputs for the run's precision.

Every module (the root included, with path '') gets a forward hook. Each tensor in a module's
output is copied to the CPU when its hook runs, so an in-place kernel that later reuses the buffer
cannot change what was captured.

Without ``--dump`` the records stream to the parent on file descriptor 3 (never stdout: the user's
code may print, so stdout is sent to stderr). Each frame is a 4-byte little-endian header length,
a UTF-8 JSON header and, for records, ``byteLength`` raw little-endian bytes (bfloat16 and float16
as their 16-bit words, bool as one byte):

    {"type": "hello", "protocol": 1, "torch", "device", "dtype", "python"}
    {"type": "record", "name", "seq", "module", "class", "call", "output", "dtype", "shape",
     "byteLength", "source": {"file", "line"} | null}  + payload
    {"type": "done", "records"}
    {"type": "error", "message", "traceback"}  (then exit 1)

With ``--dump DIR`` the capture is written as an Ekka dump (format version 1): ``manifest.json``
plus safetensors shards. Exit codes: 0 done, 1 the capture failed, 2 bad arguments, 3 torch cannot
be imported by this interpreter.

Standard library and torch only: this file ships with the extension and runs in the user's
environment.
"""

import argparse
import ctypes
import importlib.util
import inspect
import json
import os
import signal
import struct
import sys
import threading
import time
import traceback

import ekka_drill
import ekka_graft

PROTOCOL = 1
DATA_FD = 3
DUMP_FORMAT = "ekka-dump"
DUMP_VERSION = 1
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_TORCH = 3
# A dump shard is written once this many tensor bytes are pending, so memory stays bounded.
SHARD_BYTES = 256 * 1024 * 1024
# Nested outputs deeper than this are not walked (guards against self-referencing containers).
MAX_OUTPUT_DEPTH = 16
# Integer inputs up to this many elements (token ids) are written into the dump's manifest.
MAX_INPUT_VALUES = 4096


class CaptureError(Exception):
    """A failure with a message meant for the user as it is (no traceback needed)."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="ekka_capture.py",
        description="Capture every module output of a PyTorch model for Ekka.",
    )
    parser.add_argument("--factory", help="FILE.py:function returning (model, steps)")
    parser.add_argument(
        "--hf-model",
        metavar="DIR",
        help="a HuggingFace model directory (needs transformers), instead of --factory",
    )
    parser.add_argument(
        "--token-ids",
        metavar="IDS",
        help="with --hf-model: the prompt as comma-separated token ids (one step)",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--dump", metavar="DIR", help="write an Ekka dump to DIR instead of fd 3")
    parser.add_argument(
        "--inputs",
        action="store_true",
        help="capture every tensor input of each module (outputs named in.0, in.<keyword>, ...), "
        "not only those that are no other module's output",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        metavar="N",
        help="fail once the captured tensors exceed N bytes in total",
    )
    parser.add_argument(
        "--graft-save",
        metavar="FILE",
        help="save every module's first-call arguments to FILE (for another run's grafts and "
        "drill-downs)",
    )
    parser.add_argument(
        "--graft-from",
        metavar="FILE",
        help="after the steps, run each leaf module on the arguments saved in FILE and record "
        "its output as <module>#1/graft",
    )
    parser.add_argument(
        "--graft-max-bytes",
        type=int,
        default=512 * 1024 * 1024,
        metavar="N",
        help="with --graft-save: stop saving arguments once they take N bytes (default 512 MiB)",
    )
    parser.add_argument(
        "--drill",
        action="append",
        metavar="MODULE",
        help="with --graft-from, instead of the steps: run MODULE on its saved arguments and "
        "record every tensor op inside it as <module>#1/op.<k> (repeat for more modules)",
    )
    args = parser.parse_args(argv)
    if args.drill and not args.graft_from:
        parser.error("--drill needs --graft-from FILE (the arguments the modules run on)")
    if bool(args.factory) == bool(args.hf_model):
        parser.error("give either --factory FILE.py:function or --hf-model DIR")
    if args.hf_model:
        if not args.token_ids:
            parser.error("--hf-model needs --token-ids")
        try:
            args.token_ids = [int(t) for t in args.token_ids.split(",")]
        except ValueError:
            parser.error(f"--token-ids must be comma-separated integers, got {args.token_ids!r}")
        return args
    file, sep, function = args.factory.rpartition(":")
    if not sep or not file or not function.isidentifier():
        parser.error(f"--factory must be FILE.py:function, got {args.factory!r}")
    if args.max_bytes is not None and args.max_bytes <= 0:
        parser.error("--max-bytes must be a positive number of bytes")
    return args


# ---------------------------------------------------------------------------------------------
# Tensors


def dtype_table(torch):
    """torch dtype -> (Ekka dtype name, safetensors dtype code, bytes per element)."""
    return {
        torch.float32: ("float32", "F32", 4),
        torch.float16: ("float16", "F16", 2),
        torch.bfloat16: ("bfloat16", "BF16", 2),
        torch.float64: ("float64", "F64", 8),
        torch.int8: ("int8", "I8", 1),
        torch.uint8: ("uint8", "U8", 1),
        torch.int16: ("int16", "I16", 2),
        torch.int32: ("int32", "I32", 4),
        torch.int64: ("int64", "I64", 8),
        torch.bool: ("bool", "BOOL", 1),
    }


def tensor_bytes(tensor):
    """The raw bytes of a contiguous CPU tensor, without another copy. Keep `tensor` alive."""
    size = tensor.numel() * tensor.element_size()
    if size == 0:
        return b""
    return memoryview((ctypes.c_char * size).from_address(tensor.data_ptr())).cast("B")


def walk_outputs(torch, value, path="", depth=0):
    """(path, tensor) for every tensor in a module's return value; other values are skipped."""
    if isinstance(value, torch.Tensor):
        yield path, value
        return
    if depth >= MAX_OUTPUT_DEPTH:
        return
    if isinstance(value, dict):
        items = ((str(key), item) for key, item in value.items())
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        items = zip(value._fields, value)
    elif isinstance(value, (list, tuple)):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return
    for key, item in items:
        yield from walk_outputs(torch, item, f"{path}.{key}" if path else key, depth + 1)


# ---------------------------------------------------------------------------------------------
# Where the records go


class StreamSink:
    """Frames on file descriptor 3, flushed after each frame so the parent sees records live."""

    def __init__(self):
        try:
            os.fstat(DATA_FD)
        except OSError:
            raise CaptureError(
                f"file descriptor {DATA_FD} is not open: this helper streams to the process that "
                "started it; use --dump DIR to capture from a shell"
            ) from None
        # Processes the model starts must not inherit the data channel.
        os.set_inheritable(DATA_FD, False)
        self.out = os.fdopen(DATA_FD, "wb", buffering=1 << 20)

    def frame(self, header, payload=None):
        head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
        self.out.write(struct.pack("<I", len(head)))
        self.out.write(head)
        if payload is not None:
            self.out.write(payload)
        self.out.flush()

    def hello(self, info):
        self.frame({"type": "hello", "protocol": PROTOCOL, **info})

    def record(self, header, tensor):
        self.frame({"type": "record", **header}, tensor_bytes(tensor))

    def done(self, count):
        self.frame({"type": "done", "records": count})

    def error(self, message, trace):
        self.frame({"type": "error", "message": message, "traceback": trace})


class DumpSink:
    """An Ekka dump (version 1): safetensors shards, then manifest.json once the run is done."""

    def __init__(self, directory, model):
        self.directory = os.path.abspath(directory)
        if os.path.exists(self.directory):
            if not os.path.isdir(self.directory):
                raise CaptureError(f"--dump {directory} exists and is not a directory")
            if os.listdir(self.directory):
                raise CaptureError(f"--dump {directory} is not empty; choose a new directory")
        os.makedirs(self.directory, exist_ok=True)
        self.manifest = {
            "format": DUMP_FORMAT,
            "version": DUMP_VERSION,
            "framework": "pytorch",
            "model": model,
        }
        self.records = []
        self.pending = []
        self.pending_bytes = 0
        self.shards = 0

    def hello(self, info):
        self.manifest["frameworkVersion"] = info["torch"]
        self.manifest["device"] = info["device"]
        self.manifest["dtype"] = info["dtype"]

    def describe_input(self, steps):
        self.manifest["input"] = {"steps": [describe_value(value) for value in steps]}

    def record(self, header, tensor):
        self.pending.append((header, tensor))
        self.pending_bytes += header["byteLength"]
        if self.pending_bytes >= SHARD_BYTES:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        file = f"tensors-{self.shards:05d}.safetensors"
        self.shards += 1
        entries = {}
        offset = 0
        for header, _ in self.pending:
            entries[header["name"]] = {
                "dtype": header["safetensorsDtype"],
                "shape": header["shape"],
                "data_offsets": [offset, offset + header["byteLength"]],
            }
            offset += header["byteLength"]
        entries["__metadata__"] = {"format": "pt", "producer": "ekka_capture"}
        head = json.dumps(entries, separators=(",", ":")).encode("utf-8")
        # The safetensors header is padded with spaces so the data starts 8-byte aligned.
        head += b" " * (-len(head) % 8)
        with open(os.path.join(self.directory, file), "wb") as out:
            out.write(struct.pack("<Q", len(head)))
            out.write(head)
            for _, tensor in self.pending:
                out.write(tensor_bytes(tensor))
        for header, _ in self.pending:
            record = {
                "name": header["name"],
                "seq": header["seq"],
                "kind": "module-output",
                "module": header["module"],
                "class": header["class"],
                "call": header["call"],
                "output": header["output"],
                "dtype": header["dtype"],
                "shape": header["shape"],
                "file": file,
                "key": header["name"],
            }
            # The manifest leaves `source` out when it is unknown (null is not a location).
            if header["source"] is not None:
                record["source"] = header["source"]
            for field in ("inputs", "caller", "arguments", "op", "statement"):
                if field in header:
                    record[field] = header[field]
            self.records.append(record)
        self.pending = []
        self.pending_bytes = 0

    def done(self, count):
        self.flush()
        path = os.path.join(self.directory, "manifest.json")
        manifest = {**self.manifest, "records": self.records}
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump(manifest, out, indent=1, allow_nan=False)
            out.write("\n")
        os.replace(path + ".tmp", path)
        print(f"ekka_capture: {count} records written to {self.directory}", file=sys.stderr)

    def error(self, message, trace):
        pass  # already printed to stderr; no manifest means no dump


def describe_value(value):
    """A step's arguments for the manifest: tensors as dtype and shape (token ids in full)."""
    torch = sys.modules["torch"]
    if isinstance(value, torch.Tensor):
        names = dtype_table(torch)
        dtype = names.get(value.dtype, (str(value.dtype).replace("torch.", ""),))[0]
        entry = {"dtype": dtype, "shape": list(value.shape)}
        is_integer = not value.is_floating_point() and not value.is_complex()
        if is_integer and value.numel() <= MAX_INPUT_VALUES:
            entry["values"] = value.detach().cpu().reshape(-1).tolist()
        return entry
    if isinstance(value, dict):
        return {str(key): describe_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [describe_value(item) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return {"type": type(value).__name__}


# ---------------------------------------------------------------------------------------------
# The capture


class Frame:
    """A module call in progress: the records it has read (inputs) and its children's outputs."""

    def __init__(self, module_path):
        self.module_path = module_path
        self.inputs = []
        self.children = []
        # Input path ('0', 'hidden_states') -> the record it is, for inputs already recorded.
        self.arguments = {}

    def reads(self):
        return list(dict.fromkeys(self.inputs + self.children))


class Capture:
    def __init__(self, torch, sink, max_bytes):
        self.torch = torch
        self.sink = sink
        self.max_bytes = max_bytes
        self.dtypes = dtype_table(torch)
        self.sources = {}
        self.calls = {}
        self.seq = 0
        self.total_bytes = 0
        self.warned = set()
        # The modules running now, innermost last: what each has read so far (see Frame).
        self.stack = []
        # Which record a tensor a module reads is.
        self.names = ekka_drill.TensorNames()

    def warn_once(self, key, message):
        if key not in self.warned:
            self.warned.add(key)
            print(f"ekka_capture: {message}", file=sys.stderr)

    def source_of(self, cls):
        if cls not in self.sources:
            try:
                file = inspect.getsourcefile(cls)
                line = inspect.getsourcelines(cls)[1] if file else 0
                self.sources[cls] = {"file": os.path.abspath(file), "line": line} if line else None
            except Exception:  # builtins, classes made at run time, sources not shipped
                self.sources[cls] = None
        return self.sources[cls]

    def hook_for(self, module_path):
        def hook(module, inputs, output):
            call = self.calls.get(module_path, 0) + 1
            self.calls[module_path] = call
            frame = self.pop_frame(module_path)
            # The module's own code reads its inputs and its children's outputs, nothing else.
            reads = frame.reads() if frame else None
            arguments = frame.arguments if frame and frame.arguments else None
            names = []
            for output_path, tensor in walk_outputs(self.torch, output):
                name = self.capture(
                    module_path, module, call, output_path, tensor, reads, arguments=arguments
                )
                if name:
                    names.append(name)
            if self.stack:
                self.stack[-1].children.extend(names)

        return hook

    def pop_frame(self, module_path):
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth].module_path == module_path:
                frame = self.stack[depth]
                del self.stack[depth:]
                return frame
        return None

    def pre_hook_for(self, module_path, every_input):
        # Inputs are taken before the module runs, so its own in-place work cannot change them.
        # A tensor that is already a record (another module's output) is named, not copied again;
        # any other floating-point input (a residual sum, a mask built in the caller's own code)
        # is captured as `in.<path>`, attributed to the caller. With --inputs every tensor input
        # is captured.
        def pre_hook(module, args, kwargs=None):
            call = self.calls.get(module_path, 0) + 1
            caller = self.stack[-1] if self.stack else None
            frame = Frame(module_path)
            values = list(walk_outputs(self.torch, args))
            if kwargs:
                values += list(walk_outputs(self.torch, kwargs))
            for input_path, tensor in values:
                known = self.names.name_of(tensor)
                if known is not None:
                    frame.inputs.append(known)
                    frame.arguments[input_path] = known
                    if not every_input:
                        continue
                elif not (every_input or tensor.is_floating_point()):
                    continue
                name = self.capture(
                    module_path,
                    module,
                    call,
                    f"in.{input_path}",
                    tensor,
                    caller.reads() if caller else [],
                    caller.module_path if caller else "",
                )
                if name and known is None:
                    frame.inputs.append(name)
            self.stack.append(frame)

        return pre_hook

    def capture(
        self,
        module_path,
        module,
        call,
        output_path,
        tensor,
        reads=None,
        caller=None,
        arguments=None,
        extra=None,
    ):
        """Records one tensor; returns its record name, or None when it is skipped."""
        name = f"{module_path}#{call}/{output_path}"
        if tensor.device.type == "meta":
            self.warn_once(("meta", module_path), f"{name} is a meta tensor (no values); skipped")
            return None
        if tensor.is_quantized:
            tensor = tensor.dequantize()
        elif tensor.layout != self.torch.strided:
            tensor = tensor.to_dense()
        names = self.dtypes.get(tensor.dtype)
        if names is None:
            self.warn_once(
                tensor.dtype,
                f"{name} has dtype {tensor.dtype}, which Ekka cannot compare; "
                "outputs of that dtype are skipped",
            )
            return None
        # Copied now: the model may overwrite this buffer in place once the hook returns.
        copy = tensor.detach().to("cpu", copy=True).contiguous()
        dtype, safetensors_dtype, size = names
        byte_length = copy.numel() * size
        self.total_bytes += byte_length
        if self.max_bytes is not None and self.total_bytes > self.max_bytes:
            raise CaptureError(
                f"the captured tensors exceed --max-bytes {self.max_bytes} at {name} "
                f"({self.total_bytes} bytes so far)"
            )
        header = {
            "name": name,
            "seq": self.seq,
            "module": module_path,
            "class": type(module).__name__,
            "call": call,
            "output": output_path,
            "dtype": dtype,
            "shape": list(copy.shape),
            "byteLength": byte_length,
            "source": self.source_of(type(module)),
        }
        if reads is not None:
            header["inputs"] = reads
        if caller is not None:
            header["caller"] = caller
        if arguments is not None:
            header["arguments"] = arguments
        if extra:
            header.update(extra)
        self.seq += 1
        if isinstance(self.sink, DumpSink):
            header["safetensorsDtype"] = safetensors_dtype
        self.sink.record(header, copy)
        self.names.remember(tensor, name)
        return name


def load_factory(spec):
    file, _, function = spec.rpartition(":")
    path = os.path.abspath(file)
    if not os.path.isfile(path):
        raise CaptureError(f"factory file not found: {path}")
    folder = os.path.dirname(path)
    # The factory's own folder first, so it can import the files beside it.
    if folder not in sys.path:
        sys.path.insert(0, folder)
    stem = os.path.splitext(os.path.basename(path))[0]
    # Registered in sys.modules under its own name when free, so `inspect` finds its classes.
    free = stem.isidentifier() and stem not in sys.modules
    module_name = stem if free else f"ekka_factory_{stem}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise CaptureError(f"cannot import {path} (not a Python source file)")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    loader_spec.loader.exec_module(module)
    factory = getattr(module, function, None)
    if not callable(factory):
        raise CaptureError(f"{path} has no function {function}")
    return factory


def load_hf_model(torch, directory, token_ids, dtype):
    """A HuggingFace causal LM from its directory, run once on the given prompt."""
    try:
        import transformers
    except ImportError:
        raise CaptureError(
            f"transformers is not installed for {sys.executable}: a HuggingFace model directory "
            "needs it (or give a factory returning the model and its steps)"
        ) from None
    if not os.path.isdir(directory):
        raise CaptureError(f"{directory}: not a folder")
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, torch_dtype=dtype)
    return model, [{"input_ids": torch.tensor([token_ids], dtype=torch.long)}]


def check_built(torch, spec, built):
    if not isinstance(built, (tuple, list)) or len(built) != 2:
        raise CaptureError(
            f"{spec} must return (model, steps); it returned {type(built).__name__}"
        )
    model, steps = built
    if not isinstance(model, torch.nn.Module):
        raise CaptureError(
            f"{spec} must return an nn.Module as the model; it returned {type(model).__name__}"
        )
    if isinstance(steps, dict):
        steps = [steps]
    if not isinstance(steps, (list, tuple)) or not steps:
        raise CaptureError(
            f"{spec} must return a non-empty list of keyword-argument dicts as steps"
        )
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or not all(isinstance(key, str) for key in step):
            raise CaptureError(
                f"{spec}: step {index} must be a dict of keyword arguments, "
                f"got {type(step).__name__}"
            )
    return model, list(steps)


def to_run(torch, value, device, dtype):
    """Inputs moved to the device; float tensors converted to the run's dtype, integers kept."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return value.to(device=device, dtype=dtype)
        return value.to(device=device)
    if isinstance(value, dict):
        return {key: to_run(torch, item, device, dtype) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(to_run(torch, item, device, dtype) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_run(torch, item, device, dtype) for item in value)
    return value


def resolve_device(torch, requested):
    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if cuda else "cpu"
    if requested == "cuda" and not cuda:
        raise CaptureError(
            f"--device cuda was asked for, but torch {torch.__version__} sees no GPU"
        )
    return requested


def exit_with_parent():
    """The parent may die without killing us (it started us in our own process group)."""
    parent = os.getppid()
    # Leading our own group (as the runner starts us), processes the model started go with us.
    lead_group = hasattr(os, "killpg") and os.getpgid(0) == os.getpid()

    def watch():
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                if lead_group:
                    os.killpg(0, signal.SIGKILL)
                os._exit(EXIT_FAILED)

    threading.Thread(target=watch, name="ekka-parent-watch", daemon=True).start()


def run(torch, args, sink):
    device = resolve_device(torch, args.device)
    dtype = getattr(torch, args.dtype)
    sink.hello(
        {
            "torch": torch.__version__,
            "device": device,
            "dtype": args.dtype,
            "python": sys.version.split()[0],
        }
    )
    os.environ["EKKA_DTYPE"] = args.dtype
    os.environ["EKKA_DEVICE"] = device
    if args.hf_model:
        model, steps = load_hf_model(torch, args.hf_model, args.token_ids, dtype)
    else:
        factory = load_factory(args.factory)
        model, steps = check_built(torch, args.factory, factory())
    model.to(device=device, dtype=dtype)
    model.eval()
    if isinstance(sink, DumpSink):
        sink.describe_input(steps)
    capture = Capture(torch, sink, args.max_bytes)
    if args.drill:
        record_drill(torch, model, args, capture, device, dtype)
        sink.done(capture.seq)
        return
    handles = [
        module.register_forward_hook(capture.hook_for(path))
        for path, module in model.named_modules()
    ]
    # Keyword inputs need torch >= 2.0 (with_kwargs); older versions see positional ones only.
    with_kwargs = "with_kwargs" in inspect.signature(torch.nn.Module.register_forward_pre_hook).parameters
    handles += [
        module.register_forward_pre_hook(
            capture.pre_hook_for(path, args.inputs), **({"with_kwargs": True} if with_kwargs else {})
        )
        for path, module in model.named_modules()
    ]
    saver = None
    if args.graft_save:
        saver = ekka_graft.InputSaver(torch, args.graft_max_bytes)
        handles += [
            module.register_forward_pre_hook(
                saver.pre_hook_for(path), **({"with_kwargs": True} if with_kwargs else {})
            )
            for path, module in model.named_modules()
        ]
    try:
        with torch.no_grad():
            for step in steps:
                model(**to_run(torch, step, device, dtype))
    finally:
        for handle in handles:
            handle.remove()
    if saver is not None:
        saver.save(args.graft_save)
    if args.graft_from:
        record_grafts(torch, model, args.graft_from, capture, device, dtype)
    if device == "cuda":
        torch.cuda.synchronize()
    sink.done(capture.seq)


def record_grafts(torch, model, file, capture, device, dtype):
    """Each leaf module run on the arguments another run saved: `<module>#1/graft[.<path>]`."""

    def record(path, module, output):
        for output_path, tensor in walk_outputs(torch, output):
            name = "graft" + (f".{output_path}" if output_path else "")
            capture.capture(path, module, 1, name, tensor)

    try:
        failed = ekka_graft.run_grafts(
            torch, model, file, lambda value: to_run(torch, value, device, dtype), record
        )
    except FileNotFoundError as cause:
        raise CaptureError(str(cause)) from cause
    if failed:
        print(f"ekka_capture: {failed} leaf modules could not run on the saved arguments",
              file=sys.stderr)


def record_drill(torch, model, args, capture, device, dtype):
    """The ops inside each --drill module, run on its saved arguments (see ekka_drill)."""
    try:
        inputs = ekka_graft.load_inputs(torch, args.graft_from)
    except FileNotFoundError as cause:
        raise CaptureError(str(cause)) from cause
    failed = ekka_drill.drill(
        torch,
        model,
        inputs,
        list(dict.fromkeys(args.drill)),
        lambda value: to_run(torch, value, device, dtype),
        walk_outputs,
        capture,
    )
    if failed:
        print(
            f"ekka_capture: {len(failed)} modules not drilled (no saved arguments, or they do not "
            f"run on them): {', '.join(path or '(root)' for path in failed)}",
            file=sys.stderr,
        )


def main(argv=None):
    args = parse_args(argv)
    # The user's code may print; stdout is not ours to keep clean, so send all of it to stderr.
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import torch
    except ImportError:
        print(f"torch is not installed for {sys.executable}", file=sys.stderr)
        return EXIT_NO_TORCH
    except Exception as cause:  # a broken install: missing shared libraries, ABI mismatch
        print(f"torch cannot be imported for {sys.executable}: {cause}", file=sys.stderr)
        return EXIT_NO_TORCH
    if sys.byteorder != "little":
        print("ekka_capture: big-endian hosts are not supported", file=sys.stderr)
        return EXIT_FAILED
    try:
        sink = DumpSink(args.dump, args.factory or args.hf_model) if args.dump else StreamSink()
    except CaptureError as cause:
        print(f"ekka_capture: {cause}", file=sys.stderr)
        return EXIT_USAGE
    if not args.dump:
        exit_with_parent()
    try:
        run(torch, args, sink)
        return 0
    except BaseException as cause:
        if isinstance(cause, KeyboardInterrupt):
            raise
        if isinstance(cause, SystemExit):
            message = f"the model code called sys.exit({cause.code!r})"
        elif isinstance(cause, CaptureError):
            message = str(cause)
        else:
            message = f"{type(cause).__name__}: {cause}"
        trace = "" if isinstance(cause, CaptureError) else traceback.format_exc()
        print(trace or f"ekka_capture: {message}", file=sys.stderr)
        try:
            sink.error(message, trace)
        except OSError:
            pass  # the parent stopped reading; the exit code still tells it
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
