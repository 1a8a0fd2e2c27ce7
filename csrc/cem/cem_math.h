// The per-element maths of the CEM ops, shared by the CPU loops (cem.cpp) and the CUDA kernels
// (cem_cuda.cu) so that both compute the same bits. See common/philox.h for the rounding rules.
#pragma once

#include <cstdint>

#include "common/philox.h"

namespace vjepa_fast::cem {

using rng::dadd;
using rng::ddiv;
using rng::dmul;
using rng::dsqrt;

constexpr int kMaxActionDim = 32;  // A: the per-action arrays live in registers / local memory
constexpr int kMaxBallDims = 16;   // ball_dims: the exact L1 projection sorts them
constexpr int kSumLanes = 32;      // the canonical summation order (one warp on the GPU)

struct SampleParams {
  const float* mean;     // [B, H, A]
  const float* std;      // [B, H, A]
  const float* lower;    // [A]
  const float* upper;    // [A]
  float* out;            // [B, N, H, A]
  const float* normals;  // [B, N, H, A] given standard normals, or nullptr: draw them from Philox
  int64_t B, N, H, A;
  uint64_t seed;
  uint64_t offset;
  double radius;  // > 0: project the first ball_dims dims of each action onto the ball; 0: off
  int ball_dims;
  int norm;  // 1 or 2
};

// z[0..count) = the normals of elements j0 .. j0+count of problem b. Element j of problem b is lane j % 4
// of Philox4x32-10(key = seed, counter = (j / 4, b, offset_lo, offset_hi)); lanes (0, 1) and (2, 3) are
// Box-Muller pairs: z[4g] = r cos, z[4g+1] = r sin with r from lane 0 (2) and the angle from lane 1 (3).
VJF_HD void normals(uint64_t seed, uint64_t offset, uint32_t b, uint64_t j0, int count, float* z) {
  const auto k0 = static_cast<uint32_t>(seed);
  const auto k1 = static_cast<uint32_t>(seed >> 32);
  uint64_t cached = ~0ull;
  uint32_t r[4] = {0, 0, 0, 0};
  const uint64_t end = j0 + static_cast<uint64_t>(count);
  for (uint64_t p = j0 >> 1; 2 * p < end; ++p) {
    const uint64_t g = p >> 1;
    if (g != cached) {
      r[0] = static_cast<uint32_t>(g);
      r[1] = b;
      r[2] = static_cast<uint32_t>(offset);
      r[3] = static_cast<uint32_t>(offset >> 32);
      rng::philox4x32_10(r, k0, k1);
      cached = g;
    }
    const int lane = static_cast<int>(p & 1) * 2;
    float z0, z1;
    rng::box_muller(r[lane], r[lane + 1], z0, z1);
    const int64_t e = static_cast<int64_t>(2 * p) - static_cast<int64_t>(j0);
    if (e >= 0) z[e] = z0;
    if (e + 1 < count) z[e + 1] = z1;
  }
}

// The float nearest to d in the direction of zero (so a projected value never leaves the ball).
VJF_HD float to_float_toward_zero(double d) {
  const float f = static_cast<float>(d);
  const double fd = static_cast<double>(f);
  if (d >= 0.0 ? fd > d : fd < d) {
    return rng::bits_float(rng::float_bits(f) - 1u);  // one ulp smaller in magnitude (f != 0 here)
  }
  return f;
}

// L2 ball: scale down onto the sphere when outside (the Euclidean projection onto an L2 ball).
VJF_HD void project_l2(float* x, int d, double radius) {
  double ss = 0.0;
  for (int i = 0; i < d; ++i) {
    ss = dadd(ss, dmul(x[i], x[i]));
  }
  // Margins of 2^-48 / 2^-50 cover the double roundings: the result is inside the ball exactly.
  if (ss > dmul(dmul(radius, radius), 1.0 - 0x1p-48)) {
    const double scale = dmul(ddiv(radius, dsqrt(ss)), 1.0 - 0x1p-50);
    for (int i = 0; i < d; ++i) {
      x[i] = to_float_toward_zero(dmul(x[i], scale));
    }
  }
}

// L1 ball: the exact Euclidean projection (Duchi et al., ICML 2008): soft-threshold by theta, where theta
// makes the L1 norm equal the radius. Sorts |x| (d <= kMaxBallDims) by insertion.
VJF_HD void project_l1(float* x, int d, double radius) {
  double v[kMaxBallDims];
  double total = 0.0;
  for (int i = 0; i < d; ++i) {
    v[i] = x[i] < 0.0f ? -static_cast<double>(x[i]) : static_cast<double>(x[i]);
    total = dadd(total, v[i]);
  }
  if (!(total > dmul(radius, 1.0 - 0x1p-48))) {
    return;
  }
  double mu[kMaxBallDims];
  for (int i = 0; i < d; ++i) {
    double key = v[i];
    int j = i;
    while (j > 0 && mu[j - 1] < key) {
      mu[j] = mu[j - 1];
      --j;
    }
    mu[j] = key;
  }
  double cs = 0.0, theta = 0.0, cs_active = 0.0;
  for (int j = 0; j < d; ++j) {
    cs = dadd(cs, mu[j]);
    const double t = ddiv(dadd(cs, -radius), static_cast<double>(j + 1));
    if (mu[j] > t) {
      theta = t;
      cs_active = cs;
    }
  }
  // A margin of 2^-44 of the active mass covers the roundings of the sums: the result is inside the ball.
  theta = dadd(theta, dmul(cs_active, 0x1p-44));
  for (int i = 0; i < d; ++i) {
    const double m = dadd(v[i], -theta);
    const double r = m > 0.0 ? m : 0.0;
    x[i] = to_float_toward_zero(x[i] < 0.0f ? -r : r);
  }
}

// One action (b, n, h): out[b, n, h, :] = project(clamp(mean[b, h] + std[b, h] * z, lower, upper)), z the
// given normals[b, n, h, :] or Philox's.
VJF_HD void sample_action(const SampleParams& p, int64_t action) {
  const int64_t h = action % p.H;
  const int64_t bn = action / p.H;
  const int64_t n = bn % p.N;
  const int64_t b = bn / p.N;
  const int A = static_cast<int>(p.A);
  float z[kMaxActionDim];
  if (p.normals != nullptr) {
    const float* given = p.normals + action * A;
    for (int a = 0; a < A; ++a) {
      z[a] = given[a];
    }
  } else {
    normals(p.seed, p.offset, static_cast<uint32_t>(b), static_cast<uint64_t>(n * p.H + h) * A, A, z);
  }
  const float* mu = p.mean + (b * p.H + h) * A;
  const float* sd = p.std + (b * p.H + h) * A;
  float x[kMaxActionDim];
  for (int a = 0; a < A; ++a) {
    const float v = rng::fadd(mu[a], rng::fmul(sd[a], z[a]));
    const float lo = p.lower[a], hi = p.upper[a];
    x[a] = v < lo ? lo : (v > hi ? hi : v);
  }
  if (p.radius > 0.0 && p.ball_dims > 0) {
    if (p.norm == 1) {
      project_l1(x, p.ball_dims, p.radius);
    } else {
      project_l2(x, p.ball_dims, p.radius);
    }
  }
  float* out = p.out + action * A;
  for (int a = 0; a < A; ++a) {
    out[a] = x[a];
  }
}

// Sort key of (energy, index): ascending keys = ascending energy, ties by lower index, every NaN after
// every number (+inf included), -0 == +0. Unique per index, so every sort of them gives the same order.
VJF_HD uint64_t energy_key(float e, uint32_t index) {
  uint32_t u;
  if (e != e) {
    u = 0xffffffffu;
  } else {
    u = e == 0.0f ? 0u : rng::float_bits(e);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
  return (static_cast<uint64_t>(u) << 32) | index;
}

struct RefitParams {
  const float* samples;   // [B, N, H, A]
  const float* energies;  // [B, N]
  const float* mean;      // [B, H, A]
  const float* std;       // [B, H, A]
  float* new_mean;        // [B, H, A]
  float* new_std;         // [B, H, A]
  int64_t* elite_idx;     // [B, k]
  int64_t B, N, H, A;
  int64_t topk;
  double momentum_pos;       // of the mean, first A - grip_dims dims
  double momentum_grip;      // of the mean, last grip_dims dims
  double momentum_std_pos;   // of the std, first A - grip_dims dims
  double momentum_std_grip;  // of the std, last grip_dims dims
  int64_t grip_dims;
  double min_std;
  int64_t correction;  // std divisor k - correction: 0 population, 1 unbiased (k >= 2)
};

// The blend of one (b, h, a) entry given the elites' sum and sum of squared deviations (both taken in the
// canonical order, see canonical_sum in cem.cpp / the warp reduction in cem_cuda.cu).
VJF_HD double elite_mean_of(double sum, int64_t k) { return ddiv(sum, static_cast<double>(k)); }

VJF_HD void blend(const RefitParams& p, int64_t entry, double elite_mean, double sq_dev_sum) {
  const int64_t a = entry % p.A;
  const bool pos = a < p.A - p.grip_dims;
  const double m = pos ? p.momentum_pos : p.momentum_grip;
  const double ms = pos ? p.momentum_std_pos : p.momentum_std_grip;
  // Divisor k (population std, defined for k = 1) or k - 1 (unbiased, torch.std's default; k >= 2).
  const double elite_std = dsqrt(ddiv(sq_dev_sum, static_cast<double>(p.topk - p.correction)));
  const float nm = static_cast<float>(dadd(dmul(m, p.mean[entry]), dmul(dadd(1.0, -m), elite_mean)));
  float ns = static_cast<float>(dadd(dmul(ms, p.std[entry]), dmul(dadd(1.0, -ms), elite_std)));
  const float floor = static_cast<float>(p.min_std);
  ns = ns < floor ? floor : ns;
  p.new_mean[entry] = nm;
  p.new_std[entry] = ns;
}

}  // namespace vjepa_fast::cem
