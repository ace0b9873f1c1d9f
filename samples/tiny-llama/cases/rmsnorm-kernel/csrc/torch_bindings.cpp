#include <torch/library.h>

#include "ops.h"

// Exposes the kernels as torch.ops._C.<name>; custom_ops.py calls them from Python.
TORCH_LIBRARY(_C, ops) {
  // Root-mean-square normalization of each row, scaled by weight, written into out.
  ops.def("rms_norm(Tensor! out, Tensor input, Tensor weight, float epsilon) -> ()");
  ops.impl("rms_norm", torch::kCUDA, &rms_norm);
}
