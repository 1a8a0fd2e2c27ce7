// Counter-based random numbers shared by the C++ (host) and CUDA (device) kernels: Philox4x32-10
// (Salmon et al., SC'11, "Parallel random numbers: as easy as 1, 2, 3") and a Box-Muller transform to
// standard normals.
//
// Reproducibility contract: a value depends only on (key, counter), never on threads, blocks or chunking,
// and the host and the device compute it with the same sequence of IEEE operations, so CPU and CUDA give
// the same bits. To make that true:
//   * every floating-point operation goes through dadd/dmul/ddiv/dsqrt, which on the device are the
//     round-to-nearest intrinsics (__dadd_rn, ...) that nvcc never fuses into FMAs; host code that includes
//     this header must be compiled with -ffp-contract=off (CMakeLists.txt sets it for csrc/cem/cem.cpp);
//   * log, sin and cos are our own polynomials in double precision (the libm and CUDA versions differ in
//     their last bits), with exact argument reduction; relative error ~1e-16, so the float results match a
//     float64 torch.log / torch.cos computation to fp32 rounding.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define VJF_HD __host__ __device__ __forceinline__
#else
#define VJF_HD inline
#endif

namespace vjepa_fast::rng {

// ------------------------------------------------------------------ IEEE operations with fixed rounding
VJF_HD double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
VJF_HD double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
VJF_HD double ddiv(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
VJF_HD double dsqrt(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return __builtin_sqrt(a);
#endif
}
VJF_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
VJF_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
VJF_HD uint64_t double_bits(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
#endif
}
VJF_HD double bits_double(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  std::memcpy(&x, &u, sizeof(x));
  return x;
#endif
}
VJF_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
#endif
}
VJF_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof(x));
  return x;
#endif
}

// ------------------------------------------------------------------------------------ Philox4x32-10
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

VJF_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  lo = a * b;
  hi = __umulhi(a, b);
#else
  const uint64_t p = static_cast<uint64_t>(a) * b;
  lo = static_cast<uint32_t>(p);
  hi = static_cast<uint32_t>(p >> 32);
#endif
}

// In place: ctr <- Philox4x32-10(ctr, key). Matches Random123's philox4x32 with 10 rounds.
VJF_HD void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kPhiloxM0, ctr[0], hi0, lo0);
    mulhilo32(kPhiloxM1, ctr[2], hi1, lo1);
    const uint32_t c1 = ctr[1], c3 = ctr[3];
    ctr[0] = hi1 ^ c1 ^ k0;
    ctr[1] = lo1;
    ctr[2] = hi0 ^ c3 ^ k1;
    ctr[3] = lo0;
  }
}

// --------------------------------------------------------------------------- uniform -> normal maths
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // ln 2 with 32 trailing zero bits: k * kLn2Hi is exact
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr double kSqrt2 = 1.41421356237309504880;
constexpr double kTwoPi = 6.28318530717958647693;

// ln(u) for u = (2x + 1) / 2^33, the uniform on (0, 1) of a 32-bit word (never 0, never 1).
VJF_HD double log_uniform(uint32_t x) {
  const uint64_t n = 2ull * x + 1ull;  // odd, < 2^33: exact in a double
  const uint64_t bits = double_bits(static_cast<double>(n));
  int e = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  double m = bits_double((bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // n = m 2^e, m in [1, 2)
  if (m > kSqrt2) {
    m = dmul(m, 0.5);
    e += 1;
  }
  // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: the odd series to s^19 (next term < 3e-17).
  const double f = dadd(m, -1.0);  // exact (Sterbenz)
  const double s = ddiv(f, dadd(2.0, f));
  const double s2 = dmul(s, s);
  double p = 1.0 / 19.0;
  p = dadd(1.0 / 17.0, dmul(s2, p));
  p = dadd(1.0 / 15.0, dmul(s2, p));
  p = dadd(1.0 / 13.0, dmul(s2, p));
  p = dadd(1.0 / 11.0, dmul(s2, p));
  p = dadd(1.0 / 9.0, dmul(s2, p));
  p = dadd(1.0 / 7.0, dmul(s2, p));
  p = dadd(1.0 / 5.0, dmul(s2, p));
  p = dadd(1.0 / 3.0, dmul(s2, p));
  const double log_m = dadd(dmul(2.0, s), dmul(dmul(2.0, s), dmul(s2, p)));
  const double k = static_cast<double>(e - 33);
  return dadd(dmul(k, kLn2Hi), dadd(dmul(k, kLn2Lo), log_m));
}

// sin and cos of 2 pi u for u = (2x + 1) / 2^33. The quadrant is taken from the integer, so the
// reduction is exact: u = q / 4 + f with |f| < 1/8, t = 2 pi f in (-pi/4, pi/4).
VJF_HD void sincos_2pi_uniform(uint32_t x, double& sin_out, double& cos_out) {
  const uint32_t q = static_cast<uint32_t>((static_cast<uint64_t>(x) + (1ull << 29)) >> 30);  // round(4u)
  const int64_t fi = static_cast<int64_t>(x) - static_cast<int64_t>(q) * (1ll << 30);       // [-2^29, 2^29)
  const double f = dmul(static_cast<double>(2 * fi + 1), 1.0 / 8589934592.0);              // exact
  const double t = dmul(f, kTwoPi);
  const double t2 = dmul(t, t);
  // Taylor series to t^17 / t^18 (next terms < 1e-19 for |t| < pi/4).
  double ps = -1.0 / 355687428096000.0;  // -1/17!
  ps = dadd(1.0 / 1307674368000.0, dmul(t2, ps));
  ps = dadd(-1.0 / 6227020800.0, dmul(t2, ps));
  ps = dadd(1.0 / 39916800.0, dmul(t2, ps));
  ps = dadd(-1.0 / 362880.0, dmul(t2, ps));
  ps = dadd(1.0 / 5040.0, dmul(t2, ps));
  ps = dadd(-1.0 / 120.0, dmul(t2, ps));
  ps = dadd(1.0 / 6.0, dmul(t2, ps));
  const double s = dadd(t, -dmul(dmul(t, t2), ps));
  double pc = 1.0 / 6402373705728000.0;  // 1/18!
  pc = dadd(-1.0 / 20922789888000.0, dmul(t2, pc));
  pc = dadd(1.0 / 87178291200.0, dmul(t2, pc));
  pc = dadd(-1.0 / 479001600.0, dmul(t2, pc));
  pc = dadd(1.0 / 3628800.0, dmul(t2, pc));
  pc = dadd(-1.0 / 40320.0, dmul(t2, pc));
  pc = dadd(1.0 / 720.0, dmul(t2, pc));
  pc = dadd(-1.0 / 24.0, dmul(t2, pc));
  pc = dadd(0.5, dmul(t2, pc));
  const double c = dadd(1.0, -dmul(t2, pc));
  switch (q & 3u) {
    case 0: sin_out = s; cos_out = c; break;
    case 1: sin_out = c; cos_out = -s; break;
    case 2: sin_out = -s; cos_out = -c; break;
    default: sin_out = -c; cos_out = s; break;
  }
}

// Box-Muller: two independent N(0, 1) floats from two 32-bit words. |z| <= sqrt(64 ln 2) = 6.66.
VJF_HD void box_muller(uint32_t xa, uint32_t xb, float& z0, float& z1) {
  const double r = dsqrt(dmul(-2.0, log_uniform(xa)));
  double s, c;
  sincos_2pi_uniform(xb, s, c);
  z0 = static_cast<float>(dmul(r, c));
  z1 = static_cast<float>(dmul(r, s));
}

}  // namespace vjepa_fast::rng
