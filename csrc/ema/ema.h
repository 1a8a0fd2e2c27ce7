// Fused EMA update (the target-encoder step of V-JEPA pretraining): target = m * target + (1 - m) * source.
#pragma once

#include <ATen/core/Tensor.h>

namespace vjepa_fast {

void ema_update_cpu(at::TensorList target, at::TensorList source, double momentum);

#ifdef VJEPA_FAST_WITH_CUDA
void ema_update_cuda(at::TensorList target, at::TensorList source, double momentum);
#endif

}  // namespace vjepa_fast
