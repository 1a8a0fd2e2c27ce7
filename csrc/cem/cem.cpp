// CPU implementation of vjepa_fast::cem_sample / cem_refit, the argument checks shared with CUDA, and the
// backend registrations.
//
// The per-element maths is in cem_math.h, shared with the CUDA kernels: this file must be compiled with
// -ffp-contract=off (CMakeLists.txt) so the compiler never fuses a multiply and an add that the GPU rounds
// separately. Sampling runs one action per loop iteration over all (b, n, h) in an at::parallel_for;
// refit runs one problem per iteration (partial sort of N keys, then the elite statistics).
#include "cem/cem.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "cem/cem_math.h"

namespace vjepa_fast {
namespace {

void check_f32(const char* op, const char* name, const at::Tensor& t, int64_t dim) {
  TORCH_CHECK_VALUE(t.defined(), op, ": ", name, " must be a defined tensor");
  TORCH_CHECK_TYPE(t.scalar_type() == c10::kFloat, op, ": ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": ", name, " must have ", dim, " dimensions, got shape ", t.sizes());
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

void check_same_device(const char* op, const at::Tensor& ref, const char* ref_name, const at::Tensor& t,
                       const char* name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name,
                    " is on ", ref.device(), "; all tensors must be on the same device");
}

// Value checks of cem_sample's inputs: free on the CPU (the CUDA path skips them to avoid a host sync;
// the Python wrapper can run them on request).
void check_sample_values(const at::Tensor& mean, const at::Tensor& std, const at::Tensor& lower,
                         const at::Tensor& upper, double radius, int64_t ball_dims,
                         const std::optional<at::Tensor>& normals) {
  if (normals.has_value()) {
    const float* z = normals->const_data_ptr<float>();
    for (int64_t i = 0; i < normals->numel(); ++i) {
      TORCH_CHECK_VALUE(std::isfinite(z[i]), "cem_sample: normals must be finite, got ", z[i], " at flat index ", i);
    }
  }
  const float* m = mean.const_data_ptr<float>();
  const float* s = std.const_data_ptr<float>();
  for (int64_t i = 0; i < mean.numel(); ++i) {
    TORCH_CHECK_VALUE(std::isfinite(m[i]), "cem_sample: mean must be finite, got ", m[i], " at flat index ", i);
    TORCH_CHECK_VALUE(std::isfinite(s[i]) && s[i] >= 0.0f, "cem_sample: std must be finite and >= 0, got ", s[i],
                      " at flat index ", i);
  }
  const float* lo = lower.const_data_ptr<float>();
  const float* hi = upper.const_data_ptr<float>();
  for (int64_t a = 0; a < lower.numel(); ++a) {
    TORCH_CHECK_VALUE(!std::isnan(lo[a]) && !std::isnan(hi[a]), "cem_sample: lower and upper must not be NaN (dim ",
                      a, ")");
    TORCH_CHECK_VALUE(lo[a] <= hi[a], "cem_sample: lower must be <= upper, got lower[", a, "] = ", lo[a],
                      " > upper[", a, "] = ", hi[a]);
    if (radius > 0.0 && a < ball_dims) {
      TORCH_CHECK_VALUE(lo[a] <= 0.0f && hi[a] >= 0.0f, "cem_sample: the box must contain 0 on the ball dims "
                        "(the projection shrinks towards 0), got [", lo[a], ", ", hi[a], "] for dim ", a);
    }
  }
}

template <typename F>
double canonical_sum(int64_t k, F value) {
  // The order of the CUDA warp reduction: lane l sums j = l, l + 32, ...; then a tree over the lanes.
  double s[cem::kSumLanes] = {};
  for (int64_t j = 0; j < k; ++j) {
    s[j % cem::kSumLanes] = rng::dadd(s[j % cem::kSumLanes], value(j));
  }
  for (int off = cem::kSumLanes / 2; off > 0; off >>= 1) {
    for (int l = 0; l < off; ++l) {
      s[l] = rng::dadd(s[l], s[l + off]);
    }
  }
  return s[0];
}

}  // namespace

void cem_check_sample_args(const at::Tensor& mean, const at::Tensor& std, const at::Tensor& lower,
                           const at::Tensor& upper, double radius, int64_t ball_dims, int64_t norm, int64_t offset,
                           int64_t num_samples, const std::optional<at::Tensor>& normals) {
  constexpr const char* op = "cem_sample";
  check_f32(op, "mean", mean, 3);
  check_f32(op, "std", std, 3);
  check_f32(op, "lower", lower, 1);
  check_f32(op, "upper", upper, 1);
  check_same_device(op, mean, "mean", std, "std");
  check_same_device(op, mean, "mean", lower, "lower");
  check_same_device(op, mean, "mean", upper, "upper");
  TORCH_CHECK_VALUE(std.sizes() == mean.sizes(), op, ": std has shape ", std.sizes(), " but mean has shape ",
                    mean.sizes(), " (both [B, H, A])");
  const int64_t H = mean.size(1), A = mean.size(2);
  TORCH_CHECK_VALUE(H >= 1, op, ": the horizon H (mean.shape[1]) must be >= 1, got ", H);
  TORCH_CHECK_VALUE(A >= 1 && A <= cem::kMaxActionDim, op, ": the action dim A (mean.shape[2]) must be in [1, ",
                    cem::kMaxActionDim, "], got ", A);
  TORCH_CHECK_VALUE(lower.size(0) == A && upper.size(0) == A, op, ": lower and upper must have shape [A] = [", A,
                    "], got ", lower.sizes(), " and ", upper.sizes());
  TORCH_CHECK_VALUE(num_samples >= 1, op, ": num_samples must be >= 1, got ", num_samples);
  if (normals.has_value()) {
    const at::Tensor& z = *normals;
    check_f32(op, "normals", z, 4);
    check_same_device(op, mean, "mean", z, "normals");
    TORCH_CHECK_VALUE(z.size(0) == mean.size(0) && z.size(1) == num_samples && z.size(2) == H && z.size(3) == A, op,
                      ": normals must have shape [B, num_samples, H, A] = [", mean.size(0), ", ", num_samples, ", ",
                      H, ", ", A, "], got ", z.sizes());
  } else {
    TORCH_CHECK_VALUE(num_samples * H * A < (int64_t{1} << 34), op, ": num_samples * H * A must be < 2^34 (the "
                      "per-problem Philox counter), got ", num_samples * H * A);
  }
  TORCH_CHECK_VALUE(mean.size(0) < (int64_t{1} << 32), op, ": at most 2^32 - 1 problems per call");
  TORCH_CHECK_VALUE(offset >= 0, op, ": offset must be >= 0, got ", offset);
  TORCH_CHECK_VALUE(std::isfinite(radius) && radius >= 0.0, op, ": radius must be finite and >= 0 (0: no ball), got ",
                    radius);
  TORCH_CHECK_VALUE(norm == 1 || norm == 2, op, ": norm must be 1 or 2, got ", norm);
  TORCH_CHECK_VALUE(ball_dims >= 0 && ball_dims <= std::min<int64_t>(A, cem::kMaxBallDims), op,
                    ": ball_dims must be in [0, min(A, ", cem::kMaxBallDims, ")] = [0, ",
                    std::min<int64_t>(A, cem::kMaxBallDims), "], got ", ball_dims);
}

void cem_check_refit_args(const at::Tensor& samples, const at::Tensor& energies, const at::Tensor& mean,
                          const at::Tensor& std, int64_t topk, double momentum_pos, double momentum_grip,
                          int64_t grip_dims, double min_std, std::optional<double> momentum_std_pos,
                          std::optional<double> momentum_std_grip, int64_t correction) {
  constexpr const char* op = "cem_refit";
  check_f32(op, "samples", samples, 4);
  check_f32(op, "energies", energies, 2);
  check_f32(op, "mean", mean, 3);
  check_f32(op, "std", std, 3);
  check_same_device(op, samples, "samples", energies, "energies");
  check_same_device(op, samples, "samples", mean, "mean");
  check_same_device(op, samples, "samples", std, "std");
  const int64_t B = samples.size(0), N = samples.size(1), H = samples.size(2), A = samples.size(3);
  TORCH_CHECK_VALUE(energies.size(0) == B && energies.size(1) == N, op, ": energies must have shape [B, N] = [", B,
                    ", ", N, "] (from samples [B, N, H, A]), got ", energies.sizes());
  TORCH_CHECK_VALUE(mean.size(0) == B && mean.size(1) == H && mean.size(2) == A, op,
                    ": mean must have shape [B, H, A] = [", B, ", ", H, ", ", A, "], got ", mean.sizes());
  TORCH_CHECK_VALUE(std.sizes() == mean.sizes(), op, ": std has shape ", std.sizes(), " but mean has shape ",
                    mean.sizes());
  TORCH_CHECK_VALUE(H >= 1, op, ": the horizon H (samples.shape[2]) must be >= 1, got ", H);
  TORCH_CHECK_VALUE(A >= 1, op, ": the action dim A (samples.shape[3]) must be >= 1, got ", A);
  TORCH_CHECK_VALUE(N < (int64_t{1} << 32) - 1, op, ": at most 2^32 - 2 samples per problem");
  TORCH_CHECK_VALUE(topk >= 1 && topk <= N, op, ": topk must be in [1, num_samples] = [1, ", N, "], got ", topk);
  TORCH_CHECK_VALUE(momentum_pos >= 0.0 && momentum_pos <= 1.0, op, ": momentum_pos must be in [0, 1], got ",
                    momentum_pos);
  TORCH_CHECK_VALUE(momentum_grip >= 0.0 && momentum_grip <= 1.0, op, ": momentum_grip must be in [0, 1], got ",
                    momentum_grip);
  if (momentum_std_pos.has_value()) {
    TORCH_CHECK_VALUE(*momentum_std_pos >= 0.0 && *momentum_std_pos <= 1.0, op,
                      ": momentum_std_pos must be None or in [0, 1], got ", *momentum_std_pos);
  }
  if (momentum_std_grip.has_value()) {
    TORCH_CHECK_VALUE(*momentum_std_grip >= 0.0 && *momentum_std_grip <= 1.0, op,
                      ": momentum_std_grip must be None or in [0, 1], got ", *momentum_std_grip);
  }
  TORCH_CHECK_VALUE(correction == 0 || correction == 1, op, ": correction must be 0 (population std) or 1 "
                    "(unbiased std), got ", correction);
  TORCH_CHECK_VALUE(topk > correction, op, ": correction 1 (unbiased std, divisor k - 1) needs topk >= 2, got "
                    "topk = ", topk);
  TORCH_CHECK_VALUE(grip_dims >= 0 && grip_dims <= A, op, ": grip_dims must be in [0, A] = [0, ", A, "], got ",
                    grip_dims);
  TORCH_CHECK_VALUE(std::isfinite(min_std) && min_std >= 0.0, op, ": min_std must be finite and >= 0, got ",
                    min_std);
}

at::Tensor cem_sample_cpu(const at::Tensor& mean, const at::Tensor& std, const at::Tensor& lower,
                          const at::Tensor& upper, double radius, int64_t ball_dims, int64_t norm, int64_t seed,
                          int64_t offset, int64_t num_samples, const std::optional<at::Tensor>& normals) {
  cem_check_sample_args(mean, std, lower, upper, radius, ball_dims, norm, offset, num_samples, normals);
  TORCH_CHECK_VALUE(mean.device().is_cpu(), "cem_sample: CPU kernel called with tensors on ", mean.device());
  check_sample_values(mean, std, lower, upper, radius, ball_dims, normals);
  const int64_t B = mean.size(0), H = mean.size(1), A = mean.size(2);
  at::Tensor out = at::empty({B, num_samples, H, A}, mean.options());
  cem::SampleParams p{mean.const_data_ptr<float>(), std.const_data_ptr<float>(), lower.const_data_ptr<float>(),
                      upper.const_data_ptr<float>(), out.data_ptr<float>(),
                      normals.has_value() ? normals->const_data_ptr<float>() : nullptr, B, num_samples, H, A,
                      static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), radius,
                      static_cast<int>(ball_dims), static_cast<int>(norm)};
  // ~0.12 us per action (A = 7): at least 2048 actions (~0.25 ms) per task, so B = 1, N = 800 stays on one
  // thread; on the 2-core dev machines under load a parallel region for less took 10-40x longer.
  at::parallel_for(0, B * num_samples * H, 2048, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      cem::sample_action(p, i);
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cem_refit_cpu(const at::Tensor& samples, const at::Tensor& energies,
                                                             const at::Tensor& mean, const at::Tensor& std,
                                                             int64_t topk, double momentum_pos,
                                                             double momentum_grip, int64_t grip_dims,
                                                             double min_std, std::optional<double> momentum_std_pos,
                                                             std::optional<double> momentum_std_grip,
                                                             int64_t correction) {
  cem_check_refit_args(samples, energies, mean, std, topk, momentum_pos, momentum_grip, grip_dims, min_std,
                       momentum_std_pos, momentum_std_grip, correction);
  TORCH_CHECK_VALUE(samples.device().is_cpu(), "cem_refit: CPU kernel called with tensors on ", samples.device());
  const int64_t B = samples.size(0), N = samples.size(1), H = samples.size(2), A = samples.size(3);
  at::Tensor new_mean = at::empty_like(mean);
  at::Tensor new_std = at::empty_like(std);
  at::Tensor elite_idx = at::empty({B, topk}, mean.options().dtype(c10::kLong));
  cem::RefitParams p{samples.const_data_ptr<float>(), energies.const_data_ptr<float>(), mean.const_data_ptr<float>(),
                     std.const_data_ptr<float>(), new_mean.data_ptr<float>(), new_std.data_ptr<float>(),
                     elite_idx.data_ptr<int64_t>(), B, N, H, A, topk, momentum_pos, momentum_grip,
                     momentum_std_pos.value_or(momentum_pos), momentum_std_grip.value_or(momentum_grip), grip_dims,
                     min_std, correction};
  const int64_t HA = H * A;
  // ~10 us per problem (N = 800, k = 80): 16 problems per task at least (see the grain of cem_sample).
  at::parallel_for(0, B, 16, [&](int64_t first, int64_t last) {
    std::vector<uint64_t> keys(static_cast<size_t>(N));
    for (int64_t b = first; b < last; ++b) {
      const float* e = p.energies + b * N;
      for (int64_t i = 0; i < N; ++i) {
        keys[i] = cem::energy_key(e[i], static_cast<uint32_t>(i));
      }
      // Keys are unique, so the order of the first k is fully determined.
      std::partial_sort(keys.begin(), keys.begin() + topk, keys.end());
      int64_t* idx = p.elite_idx + b * topk;
      for (int64_t j = 0; j < topk; ++j) {
        idx[j] = static_cast<int64_t>(keys[j] & 0xffffffffu);
      }
      const float* x = p.samples + b * N * HA;
      for (int64_t c = 0; c < HA; ++c) {
        const double sum = canonical_sum(topk, [&](int64_t j) { return static_cast<double>(x[idx[j] * HA + c]); });
        const double em = cem::elite_mean_of(sum, topk);
        const double sq = canonical_sum(topk, [&](int64_t j) {
          const double d = rng::dadd(static_cast<double>(x[idx[j] * HA + c]), -em);
          return rng::dmul(d, d);
        });
        cem::blend(p, b * HA + c, em, sq);
      }
    }
  });
  return {new_mean, new_std, elite_idx};
}

TORCH_LIBRARY_IMPL(vjepa_fast, CPU, m) {
  m.impl("cem_sample", &cem_sample_cpu);
  m.impl("cem_refit", &cem_refit_cpu);
}

#ifdef VJEPA_FAST_WITH_CUDA
TORCH_LIBRARY_IMPL(vjepa_fast, CUDA, m) {
  m.impl("cem_sample", &cem_sample_cuda);
  m.impl("cem_refit", &cem_refit_cuda);
}
#endif

}  // namespace vjepa_fast
