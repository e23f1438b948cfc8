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

}  // namespace aegis::kernels::cpu::detail
