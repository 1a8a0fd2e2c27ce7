// CPU implementation of vjepa_fast::ema_update_ and the backend registrations.
//
// All tensors of the call are cut into chunks of kChunk elements and the chunks are spread over the
// intra-op threads in one parallel region, so a ViT's ~400 small and large parameters balance across
// cores instead of paying one parallel region per tensor. The inner loops are compiled for AVX-512,
// AVX2+FMA and baseline x86-64 (picked at load time), and read each input once: one pass over memory
// where torch._foreach_mul_ + _foreach_add_ make two.
#include "ema/ema.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/checks.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VJEPA_FAST_MULTIVERSION __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define VJEPA_FAST_MULTIVERSION
#endif

namespace vjepa_fast {
namespace {

constexpr int64_t kChunk = 1 << 16;  // 64 Ki elements: 256 KiB of fp32 per input, cache friendly

VJEPA_FAST_MULTIVERSION
void ema_f32(float* __restrict k, const float* __restrict q, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) {
    k[i] = a * k[i] + b * q[i];
  }
}

VJEPA_FAST_MULTIVERSION
void ema_f64(double* __restrict k, const double* __restrict q, int64_t n, double a, double b) {
  for (int64_t i = 0; i < n; ++i) {
    k[i] = a * k[i] + b * q[i];
  }
}

// bfloat16 as raw bits: widening is a shift, narrowing rounds to nearest even like c10::BFloat16, written
// so the compiler vectorises it.
inline float bf16_to_f32(uint16_t x) {
  uint32_t u = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return 0x7fc0;  // NaN stays a quiet NaN
  }
  const uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding_bias) >> 16);
}

VJEPA_FAST_MULTIVERSION
void ema_bf16(uint16_t* __restrict k, const uint16_t* __restrict q, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) {
    k[i] = f32_to_bf16(a * bf16_to_f32(k[i]) + b * bf16_to_f32(q[i]));
  }
}

void ema_f16(c10::Half* __restrict k, const c10::Half* __restrict q, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) {
    k[i] = static_cast<c10::Half>(a * static_cast<float>(k[i]) + b * static_cast<float>(q[i]));
  }
}

struct Chunk {
  int32_t tensor;
  int64_t begin;
  int64_t size;
};

void ema_chunk(const at::Tensor& target, const at::Tensor& source, const Chunk& c, double momentum) {
  const double one_minus = 1.0 - momentum;
  const auto fa = static_cast<float>(momentum);
  const auto fb = static_cast<float>(one_minus);
  switch (target.scalar_type()) {
    case c10::kFloat:
      ema_f32(target.data_ptr<float>() + c.begin, source.const_data_ptr<float>() + c.begin, c.size, fa, fb);
      break;
    case c10::kDouble:
      ema_f64(target.data_ptr<double>() + c.begin, source.const_data_ptr<double>() + c.begin, c.size, momentum,
              one_minus);
      break;
    case c10::kBFloat16:
      ema_bf16(reinterpret_cast<uint16_t*>(target.data_ptr<c10::BFloat16>()) + c.begin,
               reinterpret_cast<const uint16_t*>(source.const_data_ptr<c10::BFloat16>()) + c.begin, c.size, fa, fb);
      break;
    case c10::kHalf:
      ema_f16(target.data_ptr<c10::Half>() + c.begin, source.const_data_ptr<c10::Half>() + c.begin, c.size, fa, fb);
      break;
    default:
      TORCH_CHECK(false, "ema_update_: unreachable dtype ", target.scalar_type());
  }
}

}  // namespace

void ema_update_cpu(at::TensorList target, at::TensorList source, double momentum) {
  check_momentum("ema_update_", momentum);
  check_paired_lists("ema_update_", target, source);
  if (target.empty()) {
    return;
  }
  TORCH_CHECK_VALUE(target[0].device().is_cpu(), "ema_update_: CPU kernel called with tensors on ",
                    target[0].device());

  std::vector<Chunk> chunks;
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t n = target[i].numel();
    for (int64_t begin = 0; begin < n; begin += kChunk) {
      chunks.push_back({static_cast<int32_t>(i), begin, std::min(kChunk, n - begin)});
    }
  }
  at::parallel_for(0, static_cast<int64_t>(chunks.size()), 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const Chunk& chunk = chunks[c];
      ema_chunk(target[chunk.tensor], source[chunk.tensor], chunk, momentum);
    }
  });
}

TORCH_LIBRARY_IMPL(vjepa_fast, CPU, m) {
  m.impl("ema_update_", &ema_update_cpu);
}

#ifdef VJEPA_FAST_WITH_CUDA
TORCH_LIBRARY_IMPL(vjepa_fast, CUDA, m) {
  m.impl("ema_update_", &ema_update_cuda);
}
#endif

}  // namespace vjepa_fast
