// CPU implementation of vjepa_fast::ema_update_ and the backend registrations.
//
// All tensors of the call are cut into chunks of kChunk elements and the chunks are spread over the
// intra-op threads in one parallel region, so a ViT's ~400 small and large parameters balance across
// cores instead of paying one parallel region per tensor. The inner loops (ema_kernels.inc) are compiled for
// AVX-512, AVX2+FMA and baseline x86-64, picked at load time from the CPU (or forced: set_ema_cpu_isa,
// VJEPA_FAST_CPU_FALLBACK), and read each input once: one pass over memory where torch._foreach_mul_ +
// _foreach_add_ make two. Built without FMA contraction, so every copy gives the same bits.
#include "ema/ema.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/checks.h"

namespace vjepa_fast {
namespace {

constexpr int64_t kChunk = 1 << 16;  // 64 Ki elements: 256 KiB of fp32 per input, cache friendly

// One copy of the loops per instruction set, picked once at load time from the CPU (see ema_cpu_isa): the
// choice can be forced (VJEPA_FAST_CPU_FALLBACK=1 runs the AVX2 copy, as on an AVX2-only CPU; tests select
// each copy the CPU can run and check that they agree bit for bit).
namespace isa_baseline {
#include "ema/ema_kernels.inc"
}  // namespace isa_baseline

#if defined(__x86_64__) && defined(__GNUC__)
#define VJEPA_FAST_EMA_X86 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace isa_avx2 {
#include "ema/ema_kernels.inc"
}  // namespace isa_avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx2,fma")
namespace isa_avx512 {
#include "ema/ema_kernels.inc"
}  // namespace isa_avx512
#pragma GCC pop_options
#endif

struct Kernels {
  const char* name;
  void (*f32)(float*, const float*, int64_t, float, float);
  void (*f64)(double*, const double*, int64_t, double, double);
  void (*bf16)(uint16_t*, const uint16_t*, int64_t, float, float);
};

#define VJEPA_FAST_EMA_KERNELS(ns, label) Kernels{label, &ns::ema_f32, &ns::ema_f64, &ns::ema_bf16}

bool cpu_supports(const std::string& isa) {
  if (isa == "baseline") {
    return true;
  }
#ifdef VJEPA_FAST_EMA_X86
  __builtin_cpu_init();
  if (isa == "avx2") {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  if (isa == "avx512") {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  }
#endif
  return false;
}

Kernels kernels_for(const std::string& isa) {
#ifdef VJEPA_FAST_EMA_X86
  if (isa == "avx512") {
    return VJEPA_FAST_EMA_KERNELS(isa_avx512, "avx512");
  }
  if (isa == "avx2") {
    return VJEPA_FAST_EMA_KERNELS(isa_avx2, "avx2");
  }
#endif
  return VJEPA_FAST_EMA_KERNELS(isa_baseline, "baseline");
}

Kernels default_kernels() {
  const char* env = std::getenv("VJEPA_FAST_CPU_FALLBACK");
  const bool fallback = env != nullptr && env[0] != '\0' && std::strcmp(env, "0") != 0;
  if (!fallback && cpu_supports("avx512")) {
    return kernels_for("avx512");
  }
  if (cpu_supports("avx2")) {
    return kernels_for("avx2");
  }
  return kernels_for("baseline");
}

std::atomic<const Kernels*>& active_kernels() {
  static Kernels initial = default_kernels();
  static std::atomic<const Kernels*> active{&initial};
  return active;
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

void ema_chunk(const Kernels& kern, const at::Tensor& target, const at::Tensor& source, const Chunk& c,
               double momentum) {
  const double one_minus = 1.0 - momentum;
  const auto fa = static_cast<float>(momentum);
  const auto fb = static_cast<float>(one_minus);
  switch (target.scalar_type()) {
    case c10::kFloat:
      kern.f32(target.data_ptr<float>() + c.begin, source.const_data_ptr<float>() + c.begin, c.size, fa, fb);
      break;
    case c10::kDouble:
      kern.f64(target.data_ptr<double>() + c.begin, source.const_data_ptr<double>() + c.begin, c.size, momentum,
              one_minus);
      break;
    case c10::kBFloat16:
      kern.bf16(reinterpret_cast<uint16_t*>(target.data_ptr<c10::BFloat16>()) + c.begin,
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
  const Kernels& kern = *active_kernels().load(std::memory_order_acquire);
  at::parallel_for(0, static_cast<int64_t>(chunks.size()), 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const Chunk& chunk = chunks[c];
      ema_chunk(kern, target[chunk.tensor], source[chunk.tensor], chunk, momentum);
    }
  });
}

std::string ema_cpu_isa() {
  return active_kernels().load(std::memory_order_acquire)->name;
}

std::vector<std::string> ema_cpu_isas() {
  std::vector<std::string> out;
  for (const char* isa : {"baseline", "avx2", "avx512"}) {
    if (cpu_supports(isa)) {
      out.emplace_back(isa);
    }
  }
  return out;
}

void set_ema_cpu_isa(const std::string& isa) {
  TORCH_CHECK_VALUE(isa == "baseline" || isa == "avx2" || isa == "avx512",
                    "set_ema_cpu_isa: isa must be 'baseline', 'avx2' or 'avx512', got '", isa, "'");
  TORCH_CHECK_VALUE(cpu_supports(isa), "set_ema_cpu_isa: this CPU cannot run the '", isa, "' code path");
  // One table per ISA, kept for the life of the process: a concurrent update reads either the old or the new.
  static Kernels tables[3] = {kernels_for("baseline"), kernels_for("avx2"), kernels_for("avx512")};
  const int i = isa == "baseline" ? 0 : (isa == "avx2" ? 1 : 2);
  active_kernels().store(&tables[i], std::memory_order_release);
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
