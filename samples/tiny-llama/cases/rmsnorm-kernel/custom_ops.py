"""Python entry points of the engine's compiled ops (csrc/), in the style of vLLM's `_custom_ops`.

With the extension built and a CUDA device, each op runs its kernel through `torch.ops._C` (see
csrc/torch_bindings.cpp). Everywhere else it runs a torch function that computes what the kernel
computes, step for step, so that the target exports to ONNX on a CPU with the kernel's behaviour.
"""

import torch

try:
    import _C  # noqa: F401  (the extension built from csrc/; registers torch.ops._C.*)

    KERNELS_BUILT = True
except ImportError:
    KERNELS_BUILT = False


def rms_norm(input, weight, epsilon):
    if KERNELS_BUILT and input.is_cuda:
        out = torch.empty_like(input)
        torch.ops._C.rms_norm(out, input.contiguous(), weight, epsilon)
        return out
    return rms_norm_as_kernel(input, weight, epsilon)


def rms_norm_as_kernel(input, weight, epsilon):
    """csrc/layernorm_kernels.cu's rms_norm_kernel: the row's sum of squares, accumulated over
    pairs of elements, is divided by the number of pairs."""
    num_pairs = input.shape[-1] // 2
    variance = input.pow(2).sum(-1, keepdim=True) / num_pairs
    return input * torch.rsqrt(variance + epsilon) * weight
