// vec_math.h — branch-free float math that gcc -O3 vectorises inside a plain `for` loop.
//
// std::exp, std::tanh and std::erf on float are scalar libm calls, and without -ffast-math (which we
// forbid) gcc will not vectorise a loop that calls them. The functions here are written only with
// +, *, /, fma, comparisons-as-selects and integer bit operations on the float representation, and
// are forced inline, so `for (i...) out[i] = vm::gelu(in[i]);` compiles to AVX2/AVX-512 code.
// Every branch is computed for every lane and the answer picked with ?: (no data-dependent jumps).
//
// What this is not: a general libm. Only what the f32 elementwise kernels need: exp, log, the normal
// CDF Φ (the exact erf-form gelu and its derivative), tanh and sigmoid. The f64 kernels keep calling
// the std:: functions: they are the exact path that finite-difference gradient checks rely on.
//
// Accuracy: max error in ulps of the exact result (i.e. |got - exact| / ulp; correctly rounded is
// 0.5), against the f64 std:: functions, over every 1/4096 step of [-20, 20] (plus [-110, 110] for
// exp and sigmoid, 2^-149 ... 2^128 for log, tiny |x| of both signs, specials) and over 40M random
// inputs (random bit patterns and uniform on [-16, 16]); gcc 12, -O3 -march=native with FMA:
//   exp 1.0   log 0.9   sigmoid 2.3   tanh 1.5   normal_cdf 4.3   gelu 4.5
//   gelu_grad 4.8 away from its zero at x = -0.7518 (there the relative error is unbounded; the
//             absolute error is at most 1.2e-7 everywhere)
// The worst cases of normal_cdf/gelu are at small negative x, where Φ(x) sits just below 0.5 (the
// grid alone gives 3.1 / 3.4). Without FMA (-march=x86-64-v2) the grid gives cdf 3.4, gelu 3.8.
// Subnormal results (gelu for x < -13.1) are within 1 subnormal step. tests/test_elementwise.cpp
// re-runs the grid sweeps.
// Special values: exp(+inf) = +inf, exp(-inf) = 0, exp overflows to +inf and underflows through
// the subnormals to 0; log(0) = -inf, log(x < 0) = NaN; gelu(+inf) = +inf, gelu(-inf) = 0;
// tanh(+-inf) = +-1; sigmoid(+inf) = 1, sigmoid(-inf) = 0; NaN stays NaN everywhere.
//
// Speed (4M floats, one core of the dev machine, ns/element; memcpy 0.28): gelu 0.51 vs 14.2 with
// std::erf(c); exp 0.36 vs 3.1 std::exp; tanh 0.47 vs 12.2; sigmoid 0.38 vs 3.4.
//
// Polynomial and rational coefficients are our own fits (weighted least squares with Lawson
// reweighting towards minimax, in 40-digit arithmetic), rounded to float.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#define MUXNET_VM_INLINE inline __attribute__((always_inline))

namespace muxnet::vm {

MUXNET_VM_INLINE uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

MUXNET_VM_INLINE float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// a * b + c, fused (one rounding) when the target has FMA instructions.
MUXNET_VM_INLINE float madd(float a, float b, float c) {
#ifdef __FMA__
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// hi + lo == a * a exactly (hi = round(a * a)), for |a| < 2^60 (no overflow in the split).
MUXNET_VM_INLINE void square_exact(float a, float& hi, float& lo) {
  hi = a * a;
#ifdef __FMA__
  lo = __builtin_fmaf(a, a, -hi);
#else
  // Dekker: split a into two 12-bit halves whose products are exact.
  const float c = 4097.0f * a;
  const float ah = c - (c - a);
  const float al = a - ah;
  lo = ((ah * ah - hi) + 2.0f * ah * al) + al * al;
#endif
}

namespace detail {

// e^r - 1 - r = r^2 P(r) on |r| <= ln2 / 2 (relative error of 1 + r + r^2 P(r): 4e-9).
MUXNET_VM_INLINE float exp_reduced(float r) {
  float p = 1.381445793e-03f;
  p = madd(p, r, 8.368780836e-03f);
  p = madd(p, r, 4.166839272e-02f);
  p = madd(p, r, 1.666651964e-01f);
  p = madd(p, r, 4.999999404e-01f);
  return madd(p, r * r, r) + 1.0f;
}

constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23

// Cody-Waite reduction y = n ln2 + r, |r| <= ln2 / 2 (plus rounding), for |y| < 2^22 / log2(e).
// Returns r; n_bits is n + bias as an int. ln2 = ln2_hi + ln2_lo with ln2_hi = 355/512, so n ln2_hi
// and y - n ln2_hi are exact.
MUXNET_VM_INLINE float exp_reduce(float y, int32_t bias, int32_t& n_bits) {
  // Adding 1.5 * 2^23 rounds y / ln2 to an integer n and leaves it in the low mantissa bits of t.
  const float t = madd(y, 1.44269502f, kShifter);
  const float n = t - kShifter;
  n_bits = int32_t(float_bits(t) - (float_bits(kShifter) - uint32_t(bias)));
  const float r = madd(n, -0.693359375f, y);
  return madd(n, 2.121944417e-4f, r);
}

// 2^64 e^(y + dy) for y in [-131, 0] or NaN, and |dy| < 1e-3: the small correction dy is added to
// the reduced argument, where it costs no precision. The result is a normal float even where e^y
// is subnormal (or underflows: e^-104 < 2^-150): the caller multiplies by 2^-64 last, so that
// gradual underflow rounds only once.
MUXNET_VM_INLINE float exp_nonpos_scaled(float y, float dy = 0.0f) {
  int32_t n_bits;
  const float r = exp_reduce(y, 127 + 64, n_bits) + dy;
  return exp_reduced(r) * bits_float(uint32_t(n_bits) << 23);  // 2^(n + 64), n + 64 >= -125
}

// e^y for y <= 0 (NaN passes through).
MUXNET_VM_INLINE float exp_nonpos(float y) {
  y = y < -104.0f ? -104.0f : y;  // e^-104 < 2^-150 (half the smallest subnormal): rounds to +0
  return exp_nonpos_scaled(y) * 5.42101086e-20f;  // 2^-64
}

}  // namespace detail

// e^x (max error 1 ulp). Cody-Waite reduction x = n ln2 + r, e^r by a polynomial, then the result is
// scaled by 2^n in two steps so that gradual underflow rounds only once.
MUXNET_VM_INLINE float exp(float x) {
  // Clamp so that n stays in [-150, 128]; written so that NaN passes both tests unchanged.
  x = x > 88.8f ? 88.8f : x;      // ln(FLT_MAX) = 88.72: e^88.8 overflows to +inf below
  x = x < -104.0f ? -104.0f : x;  // e^-104 < 2^-150 (half the smallest subnormal): rounds to +0
  int32_t n_bits;
  const float r = detail::exp_reduce(x, 0, n_bits);
  // 2^n = 2^n1 * 2^n2 with n1, n2 in [-75, 64]: both factors are normal floats, p * 2^n1 is exact.
  const int32_t n1 = n_bits >> 1;
  const int32_t n2 = n_bits - n1;
  const float s1 = bits_float(uint32_t(n1 + 127) << 23);
  const float s2 = bits_float(uint32_t(n2 + 127) << 23);
  return (detail::exp_reduced(r) * s1) * s2;
}

// ln x (max error 1 ulp). x = 2^k z with z in [sqrt(1/2), sqrt(2)), found from the bits (subnormals
// are scaled by 2^23 first); ln z = f - f^2/2 + f^3 P(f) for f = z - 1 (exact); ln x = k ln2 + ln z
// with ln2 split as in exp. ln(+0) = -inf, ln(x < 0) = NaN, ln(+inf) = +inf, NaN stays NaN.
MUXNET_VM_INLINE float log(float x) {
  const bool tiny = x < 1.17549435e-38f;  // subnormal (or <= 0, handled at the end)
  const float xs = tiny ? x * 8388608.0f : x;
  const uint32_t off = 0x3f3504f3u;  // bits of sqrt(1/2)
  const uint32_t t = float_bits(xs) - off;
  const int32_t k = int32_t(t) >> 23;  // arithmetic shift: floor
  const float z = bits_float(float_bits(xs) - (uint32_t(k) << 23));
  const float f = z - 1.0f;
  float p = -7.634214312e-02f;
  p = madd(p, f, 1.276185364e-01f);
  p = madd(p, f, -1.316041648e-01f);
  p = madd(p, f, 1.420173794e-01f);
  p = madd(p, f, -1.662333310e-01f);
  p = madd(p, f, 2.000122666e-01f);
  p = madd(p, f, -2.500082254e-01f);
  p = madd(p, f, 3.333333135e-01f);
  const float f2 = f * f;
  const float lnz = madd(f2 * f, p, -0.5f * f2) + f;
  const float kf = float(k) - (tiny ? 23.0f : 0.0f);
  const float r = madd(kf, 0.693359375f, madd(kf, -2.121944417e-4f, lnz));
  const float nonpos = x == 0.0f ? -INFINITY : NAN;
  const float r2 = x > 0.0f ? r : nonpos;  // NaN: NAN
  return x == INFINITY ? x : r2;
}

namespace detail {

constexpr float kInvSqrt2Pi = 0.398942292f;                   // K = 1 / sqrt(2 pi), rounded
constexpr float kInvSqrt2PiOver2p64 = 0.398942292f * 0x1p-64f;  // K 2^-64 (exact)

// The pieces of Φ(-u) = K e ρ for u = min(|x|, 16), K = 1 / sqrt(2 pi):
//   e64 = 2^64 exp(-u^2 / 2) (see exp_nonpos_scaled; the caller applies 2^-64 in its last product)
//   ρ = Q(u) / (u Q(u) + P(u)), so that K ρ = K / (u + P/Q) = Φ(-u) / e.
// P/Q approximates g(u) = K e / Φ(-u) - u, which falls from 0.80 at u = 0 to ~1/u. Written this way
// the rounding errors of the two Horner sums (which grow with u) cancel between numerator and
// denominator except through g, with weight g / (u + g) < 1 (~0.006 at u = 12); a plain rational
// for Φ(-u)/e cost up to 5 ulp there. The [4/5] rational is our fit: relative error of K ρ 6.6e-10
// with the float coefficients.
// NOTE: u^2 is formed exactly (hi + lo): rounding u^2 would cost up to 80 ulp in e at u = 13.
// u is clamped with an integer min on the bits (one instruction; NaN becomes 16, so callers
// restore NaN where their formula would lose it). At u = 16 everything has underflowed to 0
// (Φ(-u) < 2^-150 beyond u = 14.2, u φ(u) beyond 14.6).
MUXNET_VM_INLINE void normal_tail(float x, float& u, float& e64, float& rho) {
  const uint32_t ub = float_bits(x) & 0x7fffffffu;
  const uint32_t cap = 0x41800000u;  // 16.0f
  u = bits_float(ub < cap ? ub : cap);
  float hi, lo;
  square_exact(u, hi, lo);
  e64 = exp_nonpos_scaled(-0.5f * hi, -0.5f * lo);  // -0.5 hi >= -128
  float p = 2.405168489e-03f;
  p = madd(p, u, 2.905547060e-02f);
  p = madd(p, u, 1.631129980e-01f);
  p = madd(p, u, 4.968741834e-01f);
  p = madd(p, u, 7.978845835e-01f);  // = 2 K: Φ(0) = K / (2 K) = 0.5 exactly
  float q = 2.404781757e-03f;
  q = madd(q, u, 2.907133661e-02f);
  q = madd(q, u, 1.676059216e-01f);
  q = madd(q, u, 5.588415861e-01f);
  q = madd(q, u, 1.078168988e+00f);
  q = madd(q, u, 1.0f);
  rho = q / madd(u, q, p);
}

}  // namespace detail

// Φ(x), the standard normal CDF = 0.5 erfc(-x / sqrt 2). For x < 0 it is computed directly (no
// 1 - erf cancellation), for x >= 0 as 1 - Φ(-x) with Φ(-x) <= 0.5.
MUXNET_VM_INLINE float normal_cdf(float x) {
  float u, e64, rho;
  detail::normal_tail(x, u, e64, rho);
  const float tail = (rho * e64) * detail::kInvSqrt2PiOver2p64;
  const float upper = x >= 0.0f ? 1.0f - tail : x;  // NaN: x
  return x < 0.0f ? tail : upper;
}

// gelu(x) = x Φ(x), the exact (erf) form, PyTorch's default.
MUXNET_VM_INLINE float gelu(float x) {
  float u, e64, rho;
  detail::normal_tail(x, u, e64, rho);
  const float m = ((u * rho) * e64) * detail::kInvSqrt2PiOver2p64;  // |x| Φ(-|x|), rounded once
  // x Φ(x) = max(x, 0) - |x| Φ(-|x|): -m for x < 0 and x - x Φ(-x) for x >= 0. NaN: NaN - m.
  const float pos = 0.0f > x ? 0.0f : x;
  return pos - m;
}

// d gelu / dx = Φ(x) + x φ(x), φ(x) = K exp(-x^2 / 2). With Φ(-u) = ρ φ(u) this is
// (ρ + x) φ(x) for x < 0 and 1 + (x - ρ) φ(x) for x >= 0, i.e. step(x) + sign(x) (u - ρ) φ(u):
// one product chain, so a subnormal φ is rounded only once.
MUXNET_VM_INLINE float gelu_grad(float x) {
  float u, e64, rho;
  detail::normal_tail(x, u, e64, rho);
  const float d0 = u - rho;
  const float d = x < 0.0f ? -d0 : d0;  // the same test as step's (x = -0 counts as x >= 0)
  const float upper = x >= 0.0f ? 1.0f : x;  // NaN: x
  const float step = x < 0.0f ? 0.0f : upper;
  return madd(d * e64, detail::kInvSqrt2PiOver2p64, step);
}

// tanh(x): x + x^3 P(x^2) for |x| < 0.625, else sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) in
// (0, 0.29] (no cancellation and no overflow).
MUXNET_VM_INLINE float tanh(float x) {
  const float a = std::fabs(x);
  const float x2 = x * x;
  float p = 2.142949495e-03f;
  p = madd(p, x2, -8.177383803e-03f);
  p = madd(p, x2, 2.170069702e-02f);
  p = madd(p, x2, -5.394676328e-02f);
  p = madd(p, x2, 1.333320588e-01f);
  p = madd(p, x2, -3.333333135e-01f);
  const float small = madd(x * x2, p, x);
  const float e = detail::exp_nonpos(-2.0f * a);  // NaN: NaN
  const float large = std::copysign((1.0f - e) / (1.0f + e), x);
  return a < 0.625f ? small : large;  // NaN: takes `large`, which is NaN
}

// 1 / (1 + e^-x), through e = exp(-|x|) <= 1 so that nothing overflows: 1 / (1 + e) for x >= 0 and
// e / (1 + e) for x < 0.
MUXNET_VM_INLINE float sigmoid(float x) {
  const float e = detail::exp_nonpos(-std::fabs(x));
  const float num = x >= 0.0f ? 1.0f : e;
  return num / (1.0f + e);  // NaN: e is NaN
}

}  // namespace muxnet::vm
