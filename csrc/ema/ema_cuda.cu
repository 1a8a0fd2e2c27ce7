// CUDA implementation of vjepa_fast::ema_update_: a multi-tensor kernel.
//
// One launch covers up to kMaxTensors tensors and kMaxBlocks chunks of kChunk elements (a chunk table in
// the kernel's parameter block, no device allocation and no host sync), so ViT-g's ~600 parameter tensors
// take ~30 launches instead of 600. Each thread moves 16 bytes per load (float4 / 8 x bf16) when both
// pointers are 16-byte aligned, with a scalar tail; maths in fp32 (fp64 for fp64 tensors).
// Only lean headers here: this file compiles in seconds with nvcc.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/checks.h"
#include "ema/ema.h"

namespace vjepa_fast {
namespace {

constexpr int kThreads = 512;
constexpr int64_t kChunk = 1 << 17;  // elements per block: 512 KiB of fp32 per input
constexpr int kMaxTensors = 64;
constexpr int kMaxBlocks = 320;

// Passed by value as the kernel's parameter block (must stay under the 4 KiB classic limit).
struct EmaLaunchParams {
  void* target[kMaxTensors];
  const void* source[kMaxTensors];
  int64_t numel[kMaxTensors];
  uint8_t aligned[kMaxTensors];
  uint8_t block_tensor[kMaxBlocks];
  int32_t block_chunk[kMaxBlocks];
  double a;  // momentum
  double b;  // 1 - momentum
};
static_assert(sizeof(EmaLaunchParams) <= 4096, "EMA launch params exceed the kernel parameter limit");

template <typename T>
struct Math {
  using acc = float;
  __device__ static float load(T x) { return static_cast<float>(x); }
  __device__ static T store(float x) { return static_cast<T>(x); }
};
template <>
struct Math<double> {
  using acc = double;
  __device__ static double load(double x) { return x; }
  __device__ static double store(double x) { return x; }
};
template <>
struct Math<__nv_bfloat16> {
  using acc = float;
  __device__ static float load(__nv_bfloat16 x) { return __bfloat162float(x); }
  __device__ static __nv_bfloat16 store(float x) { return __float2bfloat16_rn(x); }
};
template <>
struct Math<__half> {
  using acc = float;
  __device__ static float load(__half x) { return __half2float(x); }
  __device__ static __half store(float x) { return __float2half_rn(x); }
};

template <typename T>
__global__ void __launch_bounds__(kThreads) ema_multi_tensor_kernel(const __grid_constant__ EmaLaunchParams p) {
  using M = Math<T>;
  using acc_t = typename M::acc;
  constexpr int kVec = 16 / sizeof(T);
  const int t = p.block_tensor[blockIdx.x];
  const int64_t start = static_cast<int64_t>(p.block_chunk[blockIdx.x]) * kChunk;
  const int64_t rest = p.numel[t] - start;
  const int64_t n = rest < kChunk ? rest : kChunk;
  T* __restrict__ k = static_cast<T*>(p.target[t]) + start;
  const T* __restrict__ q = static_cast<const T*>(p.source[t]) + start;
  const auto a = static_cast<acc_t>(p.a);
  const auto b = static_cast<acc_t>(p.b);

  int64_t done = 0;
  if (p.aligned[t]) {
    // start is a multiple of kChunk, so 16-byte alignment of the base carries over to the chunk.
    const int64_t nvec = n / kVec;
    uint4* kv = reinterpret_cast<uint4*>(k);
    const uint4* qv = reinterpret_cast<const uint4*>(q);
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < nvec; i += kThreads) {
      uint4 kr = kv[i];
      const uint4 qr = __ldcs(qv + i);  // the source is read once: stream it past L2
      T* ke = reinterpret_cast<T*>(&kr);
      const T* qe = reinterpret_cast<const T*>(&qr);
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        ke[j] = M::store(a * M::load(ke[j]) + b * M::load(qe[j]));
      }
      kv[i] = kr;
    }
    done = nvec * kVec;
  }
  for (int64_t i = done + threadIdx.x; i < n; i += kThreads) {
    k[i] = M::store(a * M::load(k[i]) + b * M::load(q[i]));
  }
}

template <typename T>
void launch(const EmaLaunchParams& p, int blocks, cudaStream_t stream) {
  ema_multi_tensor_kernel<T><<<blocks, kThreads, 0, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Updates the tensors of one dtype (lists may mix dtypes, e.g. fp32 norms beside bf16 weights).
template <typename T>
void ema_update_typed(at::TensorList target, at::TensorList source, c10::ScalarType dtype, double momentum,
                      cudaStream_t stream) {
  EmaLaunchParams p;
  p.a = momentum;
  p.b = 1.0 - momentum;
  int slot = 0;    // slot of the current tensor in the table
  int blocks = 0;  // chunks queued for the next launch
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t n = target[i].numel();
    if (n == 0 || target[i].scalar_type() != dtype) {
      continue;
    }
    void* kp = target[i].data_ptr();
    const void* qp = source[i].const_data_ptr();
    p.target[slot] = kp;
    p.source[slot] = qp;
    p.numel[slot] = n;
    p.aligned[slot] = (reinterpret_cast<uintptr_t>(kp) % 16 == 0) && (reinterpret_cast<uintptr_t>(qp) % 16 == 0);
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    TORCH_CHECK_VALUE(chunks <= INT32_MAX, "ema_update_: target[", i, "] is too large (", n, " elements)");
    for (int64_t c = 0; c < chunks; ++c) {
      p.block_tensor[blocks] = static_cast<uint8_t>(slot);
      p.block_chunk[blocks] = static_cast<int32_t>(c);
      ++blocks;
      const bool last_chunk = c == chunks - 1;
      if (blocks == kMaxBlocks || (last_chunk && slot == kMaxTensors - 1)) {
        launch<T>(p, blocks, stream);
        blocks = 0;
        if (last_chunk) {
          slot = -1;  // the table is free: the next tensor takes slot 0
        } else {
          // The rest of this tensor continues from slot 0 of a fresh table.
          p.target[0] = p.target[slot];
          p.source[0] = p.source[slot];
          p.numel[0] = p.numel[slot];
          p.aligned[0] = p.aligned[slot];
          slot = 0;
        }
      }
    }
    ++slot;
  }
  if (blocks > 0) {
    launch<T>(p, blocks, stream);
  }
}

}  // namespace

void ema_update_cuda(at::TensorList target, at::TensorList source, double momentum) {
  check_momentum("ema_update_", momentum);
  check_paired_lists("ema_update_", target, source);
  if (target.empty()) {
    return;
  }
  TORCH_CHECK_VALUE(target[0].device().is_cuda(), "ema_update_: CUDA kernel called with tensors on ",
                    target[0].device());
  const c10::cuda::CUDAGuard guard(target[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(target[0].device().index()).stream();
  bool has[4] = {false, false, false, false};
  for (const at::Tensor& t : target) {
    const c10::ScalarType s = t.scalar_type();
    has[0] |= s == c10::kFloat;
    has[1] |= s == c10::kBFloat16;
    has[2] |= s == c10::kHalf;
    has[3] |= s == c10::kDouble;
  }
  if (has[0]) ema_update_typed<float>(target, source, c10::kFloat, momentum, stream);
  if (has[1]) ema_update_typed<__nv_bfloat16>(target, source, c10::kBFloat16, momentum, stream);
  if (has[2]) ema_update_typed<__half>(target, source, c10::kHalf, momentum, stream);
  if (has[3]) ema_update_typed<double>(target, source, c10::kDouble, momentum, stream);
}

}  // namespace vjepa_fast
