// CUDA implementation of vjepa_fast::cem_sample / cem_refit.
//
// cem_sample: one fused elementwise kernel, one thread per action (b, n, h): 2-3 Philox calls, 4 Box-Muller
//   pairs (A = 7) or A reads of the given normals, clamp and ball projection in registers, one write of A
//   floats. B=1, N=800, H=2 is 1600 threads, so the launch is latency-bound (a few us).
// cem_refit: one block per problem. The N (energy, index) keys (64-bit, unique) are bitonic-sorted in
//   shared memory (N padded to a power of two, <= kMaxRefitSamples), the first k are the elites; then one
//   warp per (h, a) entry sums the elites in the canonical order (lane l takes j = l, l + 32, ..., then a
//   shuffle tree), which the CPU twin reproduces, so the results are bitwise equal to the CPU op.
// No host sync and no allocation beyond the outputs. Only lean headers: this file compiles in seconds.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <optional>

#include "cem/cem.h"
#include "cem/cem_math.h"

namespace vjepa_fast {
namespace {

constexpr int kSampleThreads = 128;
// cem_refit runs one block per problem with up to 1024 threads (one compare-exchange each per bitonic stage).
// __launch_bounds__ makes ptxas fit a 1024-thread block: <= 64 registers per thread (65,536 per SM on sm_80/90);
// without it a register-hungry build could fail every launch above 512 threads with "too many resources".
// scripts/cuda_compile_check.sh checks the count ptxas reports.
constexpr int kRefitMaxThreads = 1024;
constexpr int64_t kMaxRefitSamples = 16384;  // 128 KiB of sort keys in shared memory (opt-in above 48 KiB)

__global__ void __launch_bounds__(kSampleThreads) cem_sample_kernel(const __grid_constant__ cem::SampleParams p,
                                                                    int64_t actions) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kSampleThreads + threadIdx.x;
  if (i < actions) {
    cem::sample_action(p, i);
  }
}

__device__ __forceinline__ double warp_canonical_sum(double s) {
#pragma unroll
  for (int off = cem::kSumLanes / 2; off > 0; off >>= 1) {
    s = rng::dadd(s, __shfl_down_sync(0xffffffffu, s, off));
  }
  return __shfl_sync(0xffffffffu, s, 0);
}

__global__ void __launch_bounds__(kRefitMaxThreads) cem_refit_kernel(const __grid_constant__ cem::RefitParams p,
                                                                      int64_t padded) {
  extern __shared__ uint64_t keys[];
  const int64_t b = blockIdx.x;
  const int tid = threadIdx.x;
  const int threads = blockDim.x;
  const float* e = p.energies + b * p.N;
  for (int64_t i = tid; i < padded; i += threads) {
    keys[i] = i < p.N ? cem::energy_key(e[i], static_cast<uint32_t>(i)) : ~0ull;
  }
  __syncthreads();
  const int64_t half = padded / 2;
  for (int64_t size = 2; size <= padded; size <<= 1) {
    for (int64_t stride = size / 2; stride > 0; stride >>= 1) {
      for (int64_t t = tid; t < half; t += threads) {
        const int64_t i = 2 * t - (t & (stride - 1));
        const int64_t j = i + stride;
        const uint64_t ki = keys[i], kj = keys[j];
        const bool ascending = (i & size) == 0;
        if ((ki > kj) == ascending) {
          keys[i] = kj;
          keys[j] = ki;
        }
      }
      __syncthreads();
    }
  }
  const int64_t k = p.topk;
  for (int64_t j = tid; j < k; j += threads) {
    p.elite_idx[b * k + j] = static_cast<int64_t>(keys[j] & 0xffffffffu);
  }
  const int64_t HA = p.H * p.A;
  const float* x = p.samples + b * p.N * HA;
  const int lane = tid % 32;
  for (int64_t c = tid / 32; c < HA; c += threads / 32) {
    double s = 0.0;
    for (int64_t j = lane; j < k; j += 32) {
      s = rng::dadd(s, static_cast<double>(x[static_cast<int64_t>(keys[j] & 0xffffffffu) * HA + c]));
    }
    const double em = cem::elite_mean_of(warp_canonical_sum(s), k);
    double sq = 0.0;
    for (int64_t j = lane; j < k; j += 32) {
      const double d = rng::dadd(static_cast<double>(x[static_cast<int64_t>(keys[j] & 0xffffffffu) * HA + c]), -em);
      sq = rng::dadd(sq, rng::dmul(d, d));
    }
    sq = warp_canonical_sum(sq);
    if (lane == 0) {
      cem::blend(p, b * HA + c, em, sq);
    }
  }
}

}  // namespace

at::Tensor cem_sample_cuda(const at::Tensor& mean, const at::Tensor& std, const at::Tensor& lower,
                           const at::Tensor& upper, double radius, int64_t ball_dims, int64_t norm, int64_t seed,
                           int64_t offset, int64_t num_samples, const std::optional<at::Tensor>& normals) {
  cem_check_sample_args(mean, std, lower, upper, radius, ball_dims, norm, offset, num_samples, normals);
  TORCH_CHECK_VALUE(mean.device().is_cuda(), "cem_sample: CUDA kernel called with tensors on ", mean.device());
  const c10::cuda::CUDAGuard guard(mean.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(mean.device().index()).stream();
  const int64_t B = mean.size(0), H = mean.size(1), A = mean.size(2);
  at::Tensor out = at::empty({B, num_samples, H, A}, mean.options());
  const int64_t actions = B * num_samples * H;
  if (actions == 0) {
    return out;
  }
  cem::SampleParams p{mean.const_data_ptr<float>(), std.const_data_ptr<float>(), lower.const_data_ptr<float>(),
                      upper.const_data_ptr<float>(), out.data_ptr<float>(),
                      normals.has_value() ? normals->const_data_ptr<float>() : nullptr, B, num_samples, H, A,
                      static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), radius,
                      static_cast<int>(ball_dims), static_cast<int>(norm)};
  const int64_t blocks = (actions + kSampleThreads - 1) / kSampleThreads;
  TORCH_CHECK_VALUE(blocks <= INT32_MAX, "cem_sample: too many actions (", actions, ")");
  cem_sample_kernel<<<static_cast<unsigned>(blocks), kSampleThreads, 0, stream>>>(p, actions);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cem_refit_cuda(const at::Tensor& samples,
                                                              const at::Tensor& energies, const at::Tensor& mean,
                                                              const at::Tensor& std, int64_t topk,
                                                              double momentum_pos, double momentum_grip,
                                                              int64_t grip_dims, double min_std,
                                                              std::optional<double> momentum_std_pos,
                                                              std::optional<double> momentum_std_grip,
                                                              int64_t correction) {
  cem_check_refit_args(samples, energies, mean, std, topk, momentum_pos, momentum_grip, grip_dims, min_std,
                       momentum_std_pos, momentum_std_grip, correction);
  TORCH_CHECK_VALUE(samples.device().is_cuda(), "cem_refit: CUDA kernel called with tensors on ", samples.device());
  const int64_t B = samples.size(0), N = samples.size(1), H = samples.size(2), A = samples.size(3);
  TORCH_CHECK_VALUE(N <= kMaxRefitSamples, "cem_refit: the CUDA kernel sorts at most ", kMaxRefitSamples,
                    " samples per problem in shared memory, got num_samples = ", N);
  const c10::cuda::CUDAGuard guard(samples.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(samples.device().index()).stream();
  at::Tensor new_mean = at::empty_like(mean);
  at::Tensor new_std = at::empty_like(std);
  at::Tensor elite_idx = at::empty({B, topk}, mean.options().dtype(c10::kLong));
  if (B == 0) {
    return {new_mean, new_std, elite_idx};
  }
  cem::RefitParams p{samples.const_data_ptr<float>(), energies.const_data_ptr<float>(), mean.const_data_ptr<float>(),
                     std.const_data_ptr<float>(), new_mean.data_ptr<float>(), new_std.data_ptr<float>(),
                     elite_idx.data_ptr<int64_t>(), B, N, H, A, topk, momentum_pos, momentum_grip,
                     momentum_std_pos.value_or(momentum_pos), momentum_std_grip.value_or(momentum_grip), grip_dims,
                     min_std, correction};
  int64_t padded = 64;
  while (padded < N) {
    padded <<= 1;
  }
  // One compare-exchange per thread per stage up to kRefitMaxThreads (N = 800 -> 1024 keys, 512 threads).
  const int threads = static_cast<int>(padded / 2 < kRefitMaxThreads ? padded / 2 : kRefitMaxThreads);
  const size_t smem = static_cast<size_t>(padded) * sizeof(uint64_t);
  if (smem > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(cem_refit_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  }
  cem_refit_kernel<<<static_cast<unsigned>(B), threads, smem, stream>>>(p, padded);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {new_mean, new_std, elite_idx};
}

}  // namespace vjepa_fast
