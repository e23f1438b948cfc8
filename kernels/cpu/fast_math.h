// Branch-free float exp, tanh, log1p and Softplus that the compiler can vectorize inside
// `#pragma omp simd` loops (libm's expf/tanhf are scalar calls and dominated the CPU training step;
// libm's log1p made Softplus 6× slower than the sigmoid).
//
// exp: Cody–Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, then the degree-6 polynomial of
// Cephes' expf (S. Moshier, Cephes Math Library, expf.c) for e^r, and 2^n built in the exponent
// bits. Relative error about 2 ulp over the clamped range [−87.3, 88.7]. Everything is plain
// arithmetic and selects so that GCC vectorizes the loops that call it with baseline SSE2.
// tanh: Cephes' tanhf split — for |x| < 0.625 the odd polynomial x + x³·P(x²); otherwise
// sign(x)·(1 − 2/(e^{2|x|} + 1)). Both branches are computed and selected, so there is no jump.
#pragma once

#include <cstdint>
#include <cstring>

namespace aegis::kernels::cpu::fast {

inline float exp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  // Round to nearest by adding and subtracting 1.5·2^23 (exact for |t| < 2^22): unlike floorf it
  // vectorizes with plain SSE2.
  // NaN passes the clamp; n is taken as 0 for it (the result stays NaN through r), because
  // converting NaN to an integer below is undefined behaviour.
  const float t = x == x ? x * 1.44269504088896341f : 0.0f;
  const float n = (t + 12582912.0f) - 12582912.0f;
  // ln 2 split into a part exact in float and the remainder (Cody–Waite).
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float tanh(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = x + x * z * p;
  const float big_abs = 1.0f - 2.0f / (exp(2.0f * ax) + 1.0f);
  const float big = x < 0.0f ? -big_abs : big_abs;
  return ax < 0.625f ? small : big;
}

// 1/(1+e^−x), written through e^{−|x|} so neither branch overflows.
inline float sigmoid(float x) {
  const float e = exp(x < 0.0f ? x : -x);
  const float pos = 1.0f / (1.0f + e);
  return x >= 0.0f ? pos : e / (1.0f + e);
}

// log(1 + u) for u in [0, 1]: w = 1 + u, log w by the polynomial of Cephes' logf (logf.c) on w
// or w/2, whichever lies in [√½, √2], then times u/(w − 1), which undoes the rounding of 1 + u
// (Goldberg 1991, "What every computer scientist should know about floating-point arithmetic",
// Theorem 4: relative accuracy for tiny u, where w rounds to 1 and the result is u itself).
inline float log1p_unit(float u) {
  const float w = 1.0f + u;
  const bool high = w > 1.41421356f;
  const float x = (high ? 0.5f * w : w) - 1.0f;  // exact: Sterbenz
  const float e = high ? 1.0f : 0.0f;
  const float z = x * x;
  float y = 7.0376836292e-2f;
  y = y * x - 1.1514610310e-1f;
  y = y * x + 1.1676998740e-1f;
  y = y * x - 1.2420140846e-1f;
  y = y * x + 1.4249322787e-1f;
  y = y * x - 1.6668057665e-1f;
  y = y * x + 2.0000714765e-1f;
  y = y * x - 2.4999993993e-1f;
  y = y * x + 3.3333331174e-1f;
  y = y * x * z - 2.12194440e-4f * e - 0.5f * z;
  const float log_w = x + y + 0.693359375f * e;
  const float d = w - 1.0f;  // exact
  return d == 0.0f ? u : log_w * (u / (d == 0.0f ? 1.0f : d));
}

// log(1 + e^x) = max(x, 0) + log1p(e^−|x|).
inline float softplus(float x) {
  return (x > 0.0f ? x : 0.0f) + log1p_unit(exp(x < 0.0f ? x : -x));
}

// Softplus' slope sigmoid(x) from its output y: 1 − e^−y, by the series y − y²/2 + … + y⁵/120
// below y = 0.1 (error < y⁶/720, under 2e-9 relative) where the subtraction would cancel.
inline float softplus_slope(float y) {
  const float series = y * (1.0f - y * (0.5f - y * (1.0f / 6.0f - y * (1.0f / 24.0f - y * (1.0f / 120.0f)))));
  return y < 0.1f ? series : 1.0f - exp(-y);
}

}  // namespace aegis::kernels::cpu::fast
