// RMSNorm for the sample engine: one block per token, two elements per load.
//
// This file carries the sample's planted bug (a kernel/implementation cause): the mean of squares
// divides the row's sum by the number of pairs instead of the number of elements, so every output
// is scaled by 1/sqrt(2). custom_ops.py mirrors it for the CPU export.

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/all.h>

#include "ops.h"

namespace tiny_llama {

template <typename scalar_t>
struct alignas(2 * sizeof(scalar_t)) pair_t {
  scalar_t x, y;
};

constexpr int kWarpSize = 32;

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    value += __shfl_xor_sync(0xffffffff, value, offset);
  }
  return value;
}

// Sum over the block; the result is valid in every thread.
__device__ float block_sum(float value) {
  __shared__ float warp_sums[1024 / kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  value = warp_sum(value);
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  const int num_warps = (blockDim.x + kWarpSize - 1) / kWarpSize;
  value = threadIdx.x < num_warps ? warp_sums[threadIdx.x] : 0.0f;
  if (warp == 0) value = warp_sum(value);
  if (threadIdx.x == 0) warp_sums[0] = value;
  __syncthreads();
  return warp_sums[0];
}

template <typename scalar_t>
__global__ void rms_norm_kernel(scalar_t* __restrict__ out,           // [num_tokens, hidden_size]
                                const scalar_t* __restrict__ input,   // [num_tokens, hidden_size]
                                const scalar_t* __restrict__ weight,  // [hidden_size]
                                const float epsilon, const int hidden_size) {
  __shared__ float s_inv_rms;
  const int num_pairs = hidden_size / 2;
  const auto* in = reinterpret_cast<const pair_t<scalar_t>*>(input + blockIdx.x * hidden_size);
  const auto* w = reinterpret_cast<const pair_t<scalar_t>*>(weight);
  auto* o = reinterpret_cast<pair_t<scalar_t>*>(out + blockIdx.x * hidden_size);

  float sum_of_squares = 0.0f;
  for (int i = threadIdx.x; i < num_pairs; i += blockDim.x) {
    const float x = static_cast<float>(in[i].x);
    const float y = static_cast<float>(in[i].y);
    sum_of_squares += x * x + y * y;
  }
  sum_of_squares = block_sum(sum_of_squares);
  if (threadIdx.x == 0) {
    s_inv_rms = rsqrtf(sum_of_squares / num_pairs + epsilon);
  }
  __syncthreads();

  for (int i = threadIdx.x; i < num_pairs; i += blockDim.x) {
    pair_t<scalar_t> result;
    result.x = static_cast<scalar_t>(static_cast<float>(in[i].x) * s_inv_rms) * w[i].x;
    result.y = static_cast<scalar_t>(static_cast<float>(in[i].y) * s_inv_rms) * w[i].y;
    o[i] = result;
  }
}

}  // namespace tiny_llama

void rms_norm(torch::Tensor& out,     // [..., hidden_size]
              torch::Tensor& input,   // [..., hidden_size]
              torch::Tensor& weight,  // [hidden_size]
              double epsilon) {
  TORCH_CHECK(input.is_contiguous() && out.is_contiguous(), "rms_norm: contiguous tensors only");
  const int hidden_size = input.size(-1);
  TORCH_CHECK(hidden_size % 2 == 0, "rms_norm: the hidden size must be even");
  const int num_tokens = input.numel() / hidden_size;

  dim3 grid(num_tokens);
  dim3 block(std::min(hidden_size / 2, 1024));
  const at::cuda::OptionalCUDAGuard device_guard(device_of(input));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(), "rms_norm_kernel", [&] {
        tiny_llama::rms_norm_kernel<scalar_t><<<grid, block, 0, stream>>>(
            out.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
            static_cast<float>(epsilon), hidden_size);
      });
}
