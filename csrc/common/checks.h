// Argument checks shared by the CPU and CUDA implementations of every op.
// They raise ValueError / TypeError on the Python side (TORCH_CHECK_VALUE / TORCH_CHECK_TYPE) and always
// name the argument and the list index that is wrong.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace vjepa_fast {

inline bool is_float_type(c10::ScalarType t) {
  return t == c10::kFloat || t == c10::kBFloat16 || t == c10::kHalf || t == c10::kDouble;
}

// Checks for an in-place update target[i] <- f(target[i], source[i]) over two tensor lists.
inline void check_paired_lists(const char* op, at::TensorList target, at::TensorList source) {
  TORCH_CHECK_VALUE(target.size() == source.size(), op, ": target and source must have the same length, got ",
                    target.size(), " and ", source.size());
  if (target.empty()) {
    return;
  }
  const c10::Device device = target[0].device();
  for (size_t i = 0; i < target.size(); ++i) {
    const at::Tensor& t = target[i];
    const at::Tensor& s = source[i];
    TORCH_CHECK_VALUE(t.defined() && s.defined(), op, ": target[", i, "] and source[", i, "] must be defined tensors");
    TORCH_CHECK_TYPE(is_float_type(t.scalar_type()), op, ": target[", i,
                     "] must be float32, bfloat16, float16 or float64, got ", t.scalar_type());
    TORCH_CHECK_TYPE(t.scalar_type() == s.scalar_type(), op, ": target[", i, "] is ", t.scalar_type(),
                     " but source[", i, "] is ", s.scalar_type(), "; both lists must hold the same dtypes");
    TORCH_CHECK_VALUE(t.sizes() == s.sizes(), op, ": target[", i, "] has shape ", t.sizes(), " but source[", i,
                      "] has shape ", s.sizes());
    TORCH_CHECK_VALUE(t.device() == device && s.device() == device, op, ": all tensors must be on ", device,
                      " (the device of target[0]); target[", i, "] is on ", t.device(), " and source[", i,
                      "] on ", s.device());
    TORCH_CHECK_VALUE(t.is_contiguous() && s.is_contiguous(), op, ": target[", i, "] and source[", i,
                      "] must be contiguous");
    TORCH_CHECK_VALUE(!t.is_same(s), op, ": target[", i, "] and source[", i, "] are the same tensor");
  }
}

inline void check_momentum(const char* op, double momentum) {
  // Written so that NaN fails too.
  TORCH_CHECK_VALUE(momentum >= 0.0 && momentum <= 1.0, op, ": momentum must be in [0, 1], got ", momentum);
}

}  // namespace vjepa_fast
