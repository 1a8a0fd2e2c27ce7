// The one place where the vjepa_fast op schemas are declared. Each op is implemented per backend with
// TORCH_LIBRARY_IMPL next to its kernels (csrc/<op>/), and gets its fake (meta) kernel in Python
// (vjepa_fast/ops/), so the ops work under FakeTensorMode and torch.compile(fullgraph=True).
#include <torch/library.h>

TORCH_LIBRARY(vjepa_fast, m) {
  // target[i] = momentum * target[i] + (1 - momentum) * source[i], in place, fp32 maths (fp64 for fp64).
  m.def("ema_update_(Tensor(a!)[] target, Tensor[] source, float momentum) -> ()");
}
