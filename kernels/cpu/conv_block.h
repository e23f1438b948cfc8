// The register-blocked micro-kernel shared by the CPU's direct and Winograd convolutions
// (kernels/cpu/conv_direct.cpp, kernels/cpu/conv_winograd.cpp), and the padded "phase plane"
// layout of an example's input they read. See conv_direct.cpp for the scheme.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/conv.h"

namespace aegis::kernels::cpu::detail {

constexpr int kOb = 4;  // output channels per register block
constexpr int kVb = 3;  // output vectors (of 8 floats) per register block
constexpr int kLanes = 8;

// Layout of one example's phase planes.
struct Planes {
  std::int64_t stride, rows, width;  // width of a phase-plane row in floats
  std::int64_t channel_stride() const { return rows * width; }
  std::int64_t phase_stride(std::int64_t channels) const { return channels * rows * width; }
  std::int64_t floats(std::int64_t channels) const { return stride * phase_stride(channels); }
};

// P_φ[c][r][j] = x̃[c][r][j·s + φ] for one example, s = pl.stride (zero outside the image), for
// rows r < pl.rows and columns j < pl.width.
void fill_planes(const Conv2dGeometry& g, const Planes& pl, const float* x, float* out);

// The vector instructions the CPU convolutions use: what the CPU has, capped by limit_isa (tests
// run every path that way on a machine with all of them).
enum class Isa { Baseline, Avx2, Avx512 };
Isa conv_isa() noexcept;
void limit_conv_isa(Isa most) noexcept;

// w [O][C][taps] as [ceil(O/kOb)][C][taps][kOb], zero-padded in the last block.
std::vector<float> pack_weights(const float* w, std::int64_t out_channels, std::int64_t in_channels, std::int64_t taps);

// Where the output vectors of one example lie: vector v is row v / per_row, columns from
// (v mod per_row)·8, with `valid` of its 8 lanes inside the row.
struct OutVector {
  std::int64_t plane_offset;  // into P_0 of channel 0: (h'·s)·width + w'
  std::int64_t out_offset;    // into one output channel plane: h'·W' + w'
  int valid;
};

__attribute__((target("avx2,fma"))) inline __m256i lane_mask(int valid) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lanes);
}

// One register block: output channels o0..o0+OB−1 (OB ≤ kOb lanes of the packed block used) and
// output vectors vec[0..VB).
template <int VB>
__attribute__((target("avx2,fma"))) inline void block(const float* planes, const float* wblock,
                                                      const std::int64_t* tap_offset, std::int64_t taps,
                                                      std::int64_t channels, std::int64_t channel_stride,
                                                      const OutVector* vec, const float* bias, std::int64_t o0, int ob,
                                                      std::int64_t out_plane, float* y_n) {
  __m256 acc[kOb][VB];
#pragma GCC unroll 8
  for (int o = 0; o < kOb; ++o) {
    const __m256 b = _mm256_set1_ps(bias && o < ob ? bias[o0 + o] : 0.0f);
#pragma GCC unroll 8
    for (int v = 0; v < VB; ++v) acc[o][v] = b;
  }
  const float* base[VB];
#pragma GCC unroll 8
  for (int v = 0; v < VB; ++v) base[v] = planes + vec[v].plane_offset;
  for (std::int64_t c = 0; c < channels; ++c) {
    const float* wc = wblock + c * taps * kOb;
    const std::int64_t coff = c * channel_stride;
    for (std::int64_t t = 0; t < taps; ++t) {
      const std::int64_t off = coff + tap_offset[t];
      __m256 xv[VB];
#pragma GCC unroll 8
      for (int v = 0; v < VB; ++v) xv[v] = _mm256_loadu_ps(base[v] + off);
      const float* wt = wc + t * kOb;
#pragma GCC unroll 8
      for (int o = 0; o < kOb; ++o) {
        const __m256 wv = _mm256_broadcast_ss(wt + o);
#pragma GCC unroll 8
        for (int v = 0; v < VB; ++v) acc[o][v] = _mm256_fmadd_ps(wv, xv[v], acc[o][v]);
      }
    }
  }
  // Indices known at compile time everywhere, so that the accumulators stay in registers.
#pragma GCC unroll 8
  for (int o = 0; o < kOb; ++o) {
    if (o >= ob) break;
    float* y_o = y_n + (o0 + o) * out_plane;
#pragma GCC unroll 8
    for (int v = 0; v < VB; ++v) {
      if (vec[v].valid == kLanes)
        _mm256_storeu_ps(y_o + vec[v].out_offset, acc[o][v]);
      else
        _mm256_maskstore_ps(y_o + vec[v].out_offset, lane_mask(vec[v].valid), acc[o][v]);
    }
  }
}

// Every output vector of `vectors` for output channels [o_begin, o_end) (o_begin a multiple of
// kOb), in register blocks of kVb vectors (tails of 2 and 1).
__attribute__((target("avx2,fma"))) inline void all_blocks(const float* planes, const std::vector<float>& packed,
                                                           const std::int64_t* tap_offset, std::int64_t taps,
                                                           std::int64_t channels, std::int64_t channel_stride,
                                                           const std::vector<OutVector>& vectors, const float* bias,
                                                           std::int64_t out_channels, std::int64_t o_begin,
                                                           std::int64_t o_end, std::int64_t out_plane, float* y_n) {
  const auto nv = static_cast<std::int64_t>(vectors.size());
  for (std::int64_t o0 = o_begin; o0 < o_end; o0 += kOb) {
    const int ob = static_cast<int>(std::min<std::int64_t>(kOb, out_channels - o0));
    const float* wblock = packed.data() + (o0 / kOb) * channels * taps * kOb;
    std::int64_t v = 0;
    for (; v + kVb <= nv; v += kVb)
      block<kVb>(planes, wblock, tap_offset, taps, channels, channel_stride, &vectors[v], bias, o0, ob, out_plane, y_n);
    if (nv - v == 2)
      block<2>(planes, wblock, tap_offset, taps, channels, channel_stride, &vectors[v], bias, o0, ob, out_plane, y_n);
    else if (nv - v == 1)
      block<1>(planes, wblock, tap_offset, taps, channels, channel_stride, &vectors[v], bias, o0, ob, out_plane, y_n);
  }
}

// [lo | hi] and the high half moved down, through the masked forms of the intrinsics: the plain
// ones pass an undefined vector through, which GCC 12 reports as maybe uninitialized.
__attribute__((target("avx512f"))) inline __m512 halves(__m256 lo, __m256 hi) {
  const __m512d low = _mm512_maskz_insertf64x4(0xFF, _mm512_setzero_pd(), _mm256_castps_pd(lo), 0);
  return _mm512_castpd_ps(_mm512_mask_insertf64x4(low, 0xFF, low, _mm256_castps_pd(hi), 1));
}
__attribute__((target("avx512f"))) inline __m512 high_half(__m512 v) {
  return _mm512_mask_shuffle_f32x4(v, 0xFFFF, v, v, 0xEE);
}

// The same register block on 512-bit vectors, for CPUs with AVX-512. It stays a separate function
// rather than one template with `block`: a shared body would have to be compiled with the
// AVX-512 target attribute, and the compiler may then use AVX-512 instructions in the AVX2 path.
// Each zmm holds two of the 8-float output vectors (vec[2k] in its low half, vec[2k + 1] in its
// high half; any two, so rows of 8 pair up as well as halves of one row), loaded as two 256-bit
// halves. VB zmm × kOb output channels of accumulators. An odd vector count leaves the high half of
// the last zmm unused (hi_valid 0: it reads the low half's input again and stores nothing).
template <int VB>
__attribute__((target("avx512f"))) inline void block512_pairs(const float* planes, const float* wblock,
                                                              const std::int64_t* tap_offset, std::int64_t taps,
                                                              std::int64_t channels, std::int64_t channel_stride,
                                                              const OutVector* lo, const OutVector* hi,
                                                              const float* bias, std::int64_t o0, int ob,
                                                              std::int64_t out_plane, float* y_n) {
  __m512 acc[kOb][VB];
#pragma GCC unroll 8
  for (int o = 0; o < kOb; ++o) {
    const __m512 b = _mm512_set1_ps(bias && o < ob ? bias[o0 + o] : 0.0f);
#pragma GCC unroll 8
    for (int v = 0; v < VB; ++v) acc[o][v] = b;
  }
  const float* base_lo[VB];
  const float* base_hi[VB];
#pragma GCC unroll 8
  for (int v = 0; v < VB; ++v) {
    base_lo[v] = planes + lo[v].plane_offset;
    base_hi[v] = planes + hi[v].plane_offset;
  }
  for (std::int64_t c = 0; c < channels; ++c) {
    const float* wc = wblock + c * taps * kOb;
    const std::int64_t coff = c * channel_stride;
    for (std::int64_t t = 0; t < taps; ++t) {
      const std::int64_t off = coff + tap_offset[t];
      __m512 xv[VB];
#pragma GCC unroll 8
      for (int v = 0; v < VB; ++v) xv[v] = halves(_mm256_loadu_ps(base_lo[v] + off), _mm256_loadu_ps(base_hi[v] + off));
      const float* wt = wc + t * kOb;
#pragma GCC unroll 8
      for (int o = 0; o < kOb; ++o) {
        const __m512 wv = _mm512_set1_ps(wt[o]);
#pragma GCC unroll 8
        for (int v = 0; v < VB; ++v) acc[o][v] = _mm512_fmadd_ps(wv, xv[v], acc[o][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int o = 0; o < kOb; ++o) {
    if (o >= ob) break;
    float* y_o = y_n + (o0 + o) * out_plane;
#pragma GCC unroll 8
    for (int v = 0; v < VB; ++v) {
      // The low half in place (lanes 0–7), the high half moved down to lanes 0–7 first.
      const __mmask16 lo_mask = static_cast<__mmask16>((1u << lo[v].valid) - 1u);
      const __mmask16 hi_mask = static_cast<__mmask16>((1u << hi[v].valid) - 1u);
      _mm512_mask_storeu_ps(y_o + lo[v].out_offset, lo_mask, acc[o][v]);
      if (hi_mask) _mm512_mask_storeu_ps(y_o + hi[v].out_offset, hi_mask, high_half(acc[o][v]));
    }
  }
}

// all_blocks on 512-bit vectors: the 8-float vectors in pairs, register blocks of 3 pairs.
__attribute__((target("avx512f"))) inline void all_blocks512(const float* planes, const std::vector<float>& packed,
                                                             const std::int64_t* tap_offset, std::int64_t taps,
                                                             std::int64_t channels, std::int64_t channel_stride,
                                                             const std::vector<OutVector>& lo,
                                                             const std::vector<OutVector>& hi, const float* bias,
                                                             std::int64_t out_channels, std::int64_t o_begin,
                                                             std::int64_t o_end, std::int64_t out_plane, float* y_n) {
  constexpr int kPairs = 3;
  const auto np = static_cast<std::int64_t>(lo.size());
  for (std::int64_t o0 = o_begin; o0 < o_end; o0 += kOb) {
    const int ob = static_cast<int>(std::min<std::int64_t>(kOb, out_channels - o0));
    const float* wblock = packed.data() + (o0 / kOb) * channels * taps * kOb;
    std::int64_t v = 0;
    for (; v + kPairs <= np; v += kPairs)
      block512_pairs<kPairs>(planes, wblock, tap_offset, taps, channels, channel_stride, &lo[v], &hi[v], bias, o0, ob,
                             out_plane, y_n);
    if (np - v == 2)
      block512_pairs<2>(planes, wblock, tap_offset, taps, channels, channel_stride, &lo[v], &hi[v], bias, o0, ob,
                        out_plane, y_n);
    else if (np - v == 1)
      block512_pairs<1>(planes, wblock, tap_offset, taps, channels, channel_stride, &lo[v], &hi[v], bias, o0, ob,
                        out_plane, y_n);
  }
}

}  // namespace aegis::kernels::cpu::detail
