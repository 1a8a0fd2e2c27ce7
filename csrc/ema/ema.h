// Fused EMA update (the target-encoder step of V-JEPA pretraining): target = m * target + (1 - m) * source.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace vjepa_fast {

void ema_update_cpu(at::TensorList target, at::TensorList source, double momentum);

// The CPU code path of ema_update_ ("avx512", "avx2" or "baseline"), the ones this CPU can run, and a switch
// (tests run every path and compare them).
std::string ema_cpu_isa();
std::vector<std::string> ema_cpu_isas();
void set_ema_cpu_isa(const std::string& isa);

#ifdef VJEPA_FAST_WITH_CUDA
void ema_update_cuda(at::TensorList target, at::TensorList source, double momentum);
#endif

}  // namespace vjepa_fast
