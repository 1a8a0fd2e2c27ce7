// Batched Cross-Entropy Method steps for latent MPC: sampling from per-problem Gaussians with a
// counter-based RNG (Philox4x32-10, or given standard normals) and projection onto the action bounds, and
// the top-k elite refit.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace vjepa_fast {

// Metadata checks shared by both backends (never read tensor values: no host sync on CUDA).
void cem_check_sample_args(const at::Tensor& mean, const at::Tensor& std, const at::Tensor& lower,
                           const at::Tensor& upper, double radius, int64_t ball_dims, int64_t norm, int64_t offset,
                           int64_t num_samples, const std::optional<at::Tensor>& normals);
void cem_check_refit_args(const at::Tensor& samples, const at::Tensor& energies, const at::Tensor& mean,
                          const at::Tensor& std, int64_t topk, double momentum_pos, double momentum_grip,
                          int64_t grip_dims, double min_std, std::optional<double> momentum_std_pos,
                          std::optional<double> momentum_std_grip, int64_t correction);

at::Tensor cem_sample_cpu(const at::Tensor& mean, const at::Tensor& std, const at::Tensor& lower,
                          const at::Tensor& upper, double radius, int64_t ball_dims, int64_t norm, int64_t seed,
                          int64_t offset, int64_t num_samples, const std::optional<at::Tensor>& normals);
std::tuple<at::Tensor, at::Tensor, at::Tensor> cem_refit_cpu(const at::Tensor& samples, const at::Tensor& energies,
                                                             const at::Tensor& mean, const at::Tensor& std,
                                                             int64_t topk, double momentum_pos,
                                                             double momentum_grip, int64_t grip_dims,
                                                             double min_std, std::optional<double> momentum_std_pos,
                                                             std::optional<double> momentum_std_grip,
                                                             int64_t correction);

#ifdef VJEPA_FAST_WITH_CUDA
at::Tensor cem_sample_cuda(const at::Tensor& mean, const at::Tensor& std, const at::Tensor& lower,
                           const at::Tensor& upper, double radius, int64_t ball_dims, int64_t norm, int64_t seed,
                           int64_t offset, int64_t num_samples, const std::optional<at::Tensor>& normals);
std::tuple<at::Tensor, at::Tensor, at::Tensor> cem_refit_cuda(const at::Tensor& samples,
                                                              const at::Tensor& energies, const at::Tensor& mean,
                                                              const at::Tensor& std, int64_t topk,
                                                              double momentum_pos, double momentum_grip,
                                                              int64_t grip_dims, double min_std,
                                                              std::optional<double> momentum_std_pos,
                                                              std::optional<double> momentum_std_grip,
                                                              int64_t correction);
#endif

}  // namespace vjepa_fast
