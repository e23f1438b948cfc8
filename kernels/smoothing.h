// The randomized-smoothing family: fill a batch of noisy copies of inputs, and count the base
// classifier's predictions per input.
//
// The m inputs x [m, d] each get `samples` noisy copies; the copies are numbered g = slot·samples +
// sample (slot = the input's row in x) and a batch holds rows g = row_start … row_start + rows − 1, so
// several inputs share a batch when `samples` is small. ids [m] (int64) are the inputs' key indices.
//   noisy_batch   out[r, j] = x[slot, j] + σ·z_j,   z_j = smoothing_normal(key, sample·d + j),
//                 key = (seed, purpose, ids[slot])  — noise is added in [0, 1] pixel space, no
//                 clipping (Cohen et al. 2019, §3: g(x) = argmax_c P[f(x + ε) = c], ε ~ N(0, σ²I)).
//   count_argmax  counts[slot·k + argmax_c logits[r, c]] += 1 (first maximum on ties). A row with a
//                 NaN logit is not counted but reported, and the caller throws: a NaN must not
//                 silently become a vote for some class.
//
// The normal draws: element e uses Philox block e/2 (core/philox.h), whose 32-bit words give
// u1 ∈ (0, 1] from 48 bits and u2 ∈ [0, 1) from 24 bits; the Box-Muller pair (Box & Muller 1958)
// r·cos 2πu2, r·sin 2πu2 with r = √(−2 ln u1) serves elements 2i and 2i+1. With 48 bits for u1
// the largest |z| is √(98 ln 2) ≈ 8.2, so the tail beyond it that the draw cannot produce has
// probability < 2e-16 per element (< 1e-6 over 10⁶ samples of a 3x32x32 input). ln, cos and sin are evaluated in float by
// fixed polynomials (series with exact rational coefficients, below) using only IEEE-rounded
// +, −, ×, ÷ and √, and the CUDA code rounds every operation explicitly (no contraction into FMA),
// so the CPU and the GPU produce bit-identical noise for the same key.
//
// CPU: OpenMP over rows, a branch-free loop over the pairs of a row (about 2.8 ns per element on
// 2 cores; GCC 12 does not vectorize it). CUDA: one thread per element pair (grid-stride), and one
// thread per row for the argmax with one atomicAdd per row.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/config.h"
#include "core/philox.h"

namespace aegis::kernels {

namespace smoothing_detail {

#if defined(__CUDA_ARCH__)
AEGIS_HD float mul(float a, float b) { return __fmul_rn(a, b); }
AEGIS_HD float add(float a, float b) { return __fadd_rn(a, b); }
AEGIS_HD float sub(float a, float b) { return __fsub_rn(a, b); }
AEGIS_HD float div(float a, float b) { return __fdiv_rn(a, b); }
AEGIS_HD float root(float a) { return __fsqrt_rn(a); }
AEGIS_HD std::uint32_t float_bits(float f) { return __float_as_uint(f); }
AEGIS_HD float bits_float(std::uint32_t u) { return __uint_as_float(u); }
#else
AEGIS_HD float mul(float a, float b) { return a * b; }
AEGIS_HD float add(float a, float b) { return a + b; }
AEGIS_HD float sub(float a, float b) { return a - b; }
AEGIS_HD float div(float a, float b) { return a / b; }
AEGIS_HD float root(float a) { return __builtin_sqrtf(a); }
AEGIS_HD std::uint32_t float_bits(float f) { return __builtin_bit_cast(std::uint32_t, f); }
AEGIS_HD float bits_float(std::uint32_t u) { return __builtin_bit_cast(float, u); }
#endif

// ln u for normal positive float u: u = m·2^e with m ∈ [√½, √2), ln m = 2·atanh(s),
// s = (m − 1)/(m + 1), |s| ≤ 0.1716, by the series 2(s + s³/3 + … + s¹¹/11) (truncation < 1e-10).
AEGIS_HD float log_positive(float u) {
  const std::uint32_t bits = float_bits(u);
  // Exponent relative to √½ (0x3f3504f3): k = ⌊log2(u/√½)⌋ (arithmetic shift), m = u·2^−k ∈ [√½, √2).
  const std::uint32_t offset = bits - 0x3f3504f3u;
  const std::int32_t k = static_cast<std::int32_t>(offset) >> 23;
  const float m = bits_float(bits - (offset & 0xff800000u));
  const float s = div(sub(m, 1.0f), add(m, 1.0f));
  const float s2 = mul(s, s);
  float poly = add(1.0f / 9.0f, mul(s2, 1.0f / 11.0f));
  poly = add(1.0f / 7.0f, mul(s2, poly));
  poly = add(1.0f / 5.0f, mul(s2, poly));
  poly = add(1.0f / 3.0f, mul(s2, poly));
  poly = add(1.0f, mul(s2, poly));
  const float ln_m = mul(2.0f, mul(s, poly));
  // k·ln 2 in two parts (Cody & Waite): k·ln2_hi is exact for |k| < 2⁸, so the sum keeps float accuracy.
  const float fk = static_cast<float>(k);
  return add(add(mul(fk, 0.693145752f), ln_m), mul(fk, 1.42860677e-06f));
}

// cos and sin of 2π·t for t ∈ [0, 1): reduce to r = 2π(t − q/4) ∈ [−π/4, π/4] with q = round(4t)
// (exact in float), evaluate the Taylor series of cos (to r¹²) and sin (to r¹³), truncation < 1e-11,
// and rotate by q quarter turns.
AEGIS_HD void cos_sin_turns(float t, float& c, float& s) {
  const float q = static_cast<float>(static_cast<int>(add(mul(t, 4.0f), 0.5f)));
  const float r = mul(sub(t, mul(q, 0.25f)), 6.28318548f);
  const float r2 = mul(r, r);
  float pc = add(-1.0f / 3628800.0f, mul(r2, 1.0f / 479001600.0f));
  pc = add(1.0f / 40320.0f, mul(r2, pc));
  pc = add(-1.0f / 720.0f, mul(r2, pc));
  pc = add(1.0f / 24.0f, mul(r2, pc));
  pc = add(-0.5f, mul(r2, pc));
  const float cr = add(1.0f, mul(r2, pc));
  float ps = add(-1.0f / 39916800.0f, mul(r2, 1.0f / 6227020800.0f));
  ps = add(1.0f / 362880.0f, mul(r2, ps));
  ps = add(-1.0f / 5040.0f, mul(r2, ps));
  ps = add(1.0f / 120.0f, mul(r2, ps));
  ps = add(-1.0f / 6.0f, mul(r2, ps));
  const float sr = add(r, mul(mul(r, r2), ps));
  // Rotation by q quarter turns without branches (so that loops over pairs vectorize): odd quarters
  // swap cos and sin, quarters 1 and 2 negate the cosine, quarters 2 and 3 the sine (sign-bit flips).
  const std::uint32_t quarter = static_cast<std::uint32_t>(static_cast<int>(q)) & 3u;
  const bool swap = (quarter & 1u) != 0;
  const float a = swap ? sr : cr;
  const float b = swap ? cr : sr;
  c = bits_float(float_bits(a) ^ (((quarter + 1u) & 2u) << 30));
  s = bits_float(float_bits(b) ^ ((quarter & 2u) << 30));
}

}  // namespace smoothing_detail

// The standard-normal pair for Philox block `pair` of `key`: elements 2·pair and 2·pair + 1.
AEGIS_HD void smoothing_normal_pair(const philox::Key& key, std::uint64_t pair, float& z0, float& z1) {
  namespace sd = smoothing_detail;
  const philox::U32x4 r = philox::block(key, pair);
  // u1 = (a·2²⁴ + b + ½)·2⁻⁴⁸ ∈ (0, 1] from the top 24 bits a, b of two words (24-bit integers
  // convert to float exactly, and as signed integers they convert in vector registers); the second
  // part matters only when a is small, which is exactly where the tail of the radius is decided.
  const float u1 = sd::add(sd::mul(static_cast<float>(static_cast<std::int32_t>(r.v[0] >> 8)), 5.9604644775390625e-08f),
                           sd::mul(sd::add(static_cast<float>(static_cast<std::int32_t>(r.v[1] >> 8)), 0.5f),
                                   3.552713678800501e-15f));
  const float u2 = sd::mul(static_cast<float>(static_cast<std::int32_t>(r.v[2] >> 8)), 5.9604644775390625e-08f);
  const float radius = sd::root(sd::mul(-2.0f, sd::log_positive(u1)));
  float c, s;
  sd::cos_sin_turns(u2, c, s);
  z0 = sd::mul(radius, c);
  z1 = sd::mul(radius, s);
}

// Element `index` of the smoothing noise stream of `key` (the slow, one-element form; the kernels
// produce pairs).
AEGIS_HD float smoothing_normal(const philox::Key& key, std::uint64_t index) {
  float z0, z1;
  smoothing_normal_pair(key, index >> 1, z0, z1);
  return (index & 1) ? z1 : z0;
}

struct SmoothingBatch {
  std::int64_t row_start = 0;  // first copy number g in the batch
  std::int64_t rows = 0;       // rows in the batch
  std::int64_t samples = 1;    // copies per input
  std::int64_t d = 0;          // elements per input
  std::uint64_t seed = 0;
  std::uint32_t purpose = philox::kPurposeSmoothing;
  float sigma = 0.0f;
  // When set, the kernels read the first copy number from this scalar (on the batch's device)
  // instead of row_start, so that a captured CUDA graph can replay the same launches for every batch.
  const std::int64_t* row_start_device = nullptr;
};

// The same signatures on both devices; pointers are on the batch's device. nan_rows (one int64)
// accumulates the rows whose logits held a NaN (not counted as votes), so that the batch loop
// never synchronizes on the GPU. advance_row_start adds `delta` to the scalar that
// SmoothingBatch::row_start_device points at: the last node of a captured batch, so that each
// replay of a CUDA graph moves on to the next batch without a copy from the host.
namespace cpu {
void noisy_batch(float* out, const float* x, const std::int64_t* ids, const SmoothingBatch& batch);
void count_argmax(std::int64_t* counts, const float* logits, const SmoothingBatch& batch, std::int64_t k,
                  std::int64_t* nan_rows);
void advance_row_start(std::int64_t* row_start, std::int64_t delta);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void noisy_batch(float* d_out, const float* d_x, const std::int64_t* d_ids, const SmoothingBatch& batch);
void count_argmax(std::int64_t* d_counts, const float* d_logits, const SmoothingBatch& batch, std::int64_t k,
                  std::int64_t* d_nan_rows);
void advance_row_start(std::int64_t* d_row_start, std::int64_t delta);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
