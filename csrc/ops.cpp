// Schemas of the compiled (C++/CUDA) ops: declared here once, implemented per backend with TORCH_LIBRARY_IMPL
// next to their kernels (csrc/<op>/), with their fake (meta) kernels in Python (vjepa_fast/ops/<op>.py), so
// they work under FakeTensorMode and torch.compile(fullgraph=True). An op with no C++ kernel (rope_attention
// and rope_attention_backward: Triton + a PyTorch reference) declares its schema in its vjepa_fast/ops/<op>.py
// with torch.library.custom_op, beside its only implementations; docs/ARCHITECTURE.md lists where each op lives.
#include <torch/library.h>

TORCH_LIBRARY(vjepa_fast, m) {
  // target[i] = momentum * target[i] + (1 - momentum) * source[i], in place, fp32 maths (fp64 for fp64).
  m.def("ema_update_(Tensor(a!)[] target, Tensor[] source, float momentum) -> ()");
  // CEM sampling (vjepa_fast/ops/cem.py has the full contract): mean, std [B, H, A] fp32, lower, upper [A];
  // returns [B, num_samples, H, A] = ball(clamp(mean + std * z, lower, upper)), z from Philox4x32-10 keyed by
  // seed at counter (element // 4, b, offset). radius 0: no ball; norm 1 or 2; ball_dims: leading dims.
  // normals [B, num_samples, H, A] fp32: given standard normals take the place of z (seed, offset unused).
  m.def("cem_sample(Tensor mean, Tensor std, Tensor lower, Tensor upper, float radius, int ball_dims, int norm, "
        "int seed, int offset, int num_samples, Tensor? normals=None) -> Tensor");
  // CEM refit: samples [B, N, H, A], energies [B, N]; the topk lowest energies (ties: lower index; NaN last)
  // give new_mean, new_std [B, H, A] (momentum blend, std >= min_std) and elite_idx [B, topk]. The std's
  // momenta default to the mean's (None); correction 0: population std (divide by k), 1: unbiased (k - 1,
  // needs topk >= 2).
  m.def("cem_refit(Tensor samples, Tensor energies, Tensor mean, Tensor std, int topk, float momentum_pos, "
        "float momentum_grip, int grip_dims, float min_std, float? momentum_std_pos=None, "
        "float? momentum_std_grip=None, int correction=0) -> (Tensor, Tensor, Tensor)");
}
