// Direct convolution forward on the CPU with AVX2 + FMA, for the small-channel 3×3 layers of
// residual networks, where im2col + sgemm spends most of its time copying: im2col writes a 9×
// larger matrix per example and OpenBLAS packs both operands again for each small product.
//
// y[n, o, h', w'] = b[o] + Σ_c Σ_{ki,kj} w[o, c, ki, kj] · x̃[n, c, h'·s + ki, w'·s + kj],
// x̃ the input zero-padded by p on every side (PyTorch's Conv2d: cross-correlation).
//
// Per example the padded input is laid out once as s "phase planes", P_φ[c][r][j] = x̃[c][r][j·s + φ]
// (φ = 0..s−1), so that tap (ki, kj) of the 8 consecutive outputs w'..w'+7 of row h' reads the 8
// consecutive floats P_{kj mod s}[c][h'·s + ki][w' + ⌊kj/s⌋ ..]: one unaligned vector load for
// any stride. Each output row is split into vectors of 8 (the last one masked when W' is not a
// multiple of 8). The micro-kernel keeps a block of kOb output channels × kVb output vectors in
// registers (kOb·kVb accumulators, enough independent FMA chains to hide the FMA latency), and
// for every input channel and tap does kVb vector loads, kOb weight broadcasts and kOb·kVb FMAs;
// the weights are repacked once per call as [O/kOb][C][kh·kw][kOb], so the broadcasts walk memory
// in order. Every output element is its own sum, in the order (c, ki, kj), independent of the
// batch, the threads and the block it falls in.
//
// Used for kernels up to 5×5 with stride ≤ 2 when the CPU has AVX2 and FMA (checked at run time;
// the code is compiled for those instructions with target attributes, so the rest of the build
// keeps its baseline ISA).
#include "kernels/cpu/conv_direct.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/conv.h"

namespace aegis::kernels::cpu::detail {

namespace {

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

Planes planes_for(const Conv2dGeometry& g) {
  const std::int64_t vectors_per_row = (g.out_width() + kLanes - 1) / kLanes;
  // Columns read: up to (vectors_per_row·8 − 1) + ⌊(kw − 1)/s⌋; rows: h'·s + ki ≤ H + 2p − 1.
  return {g.stride, g.height + 2 * g.padding, vectors_per_row * kLanes + (g.kernel_w - 1) / g.stride};
}

// P_φ[c][r][j] = x̃[c][r][j·s + φ] for one example (zero outside the image).
void fill_planes(const Conv2dGeometry& g, const Planes& pl, const float* x, float* out) {
  const std::int64_t s = g.stride, p = g.padding;
  for (std::int64_t phase = 0; phase < s; ++phase)
    for (std::int64_t c = 0; c < g.in_channels; ++c) {
      const float* xc = x + c * g.height * g.width;
      float* dst = out + phase * pl.phase_stride(g.in_channels) + c * pl.channel_stride();
      for (std::int64_t r = 0; r < pl.rows; ++r) {
        float* row = dst + r * pl.width;
        const std::int64_t ih = r - p;
        if (ih < 0 || ih >= g.height) {
          std::memset(row, 0, sizeof(float) * static_cast<std::size_t>(pl.width));
          continue;
        }
        // Columns j with 0 ≤ j·s + φ − p < W hold image pixels; the rest are padding.
        const float* src = xc + ih * g.width;
        const std::int64_t first = std::min(pl.width, std::max<std::int64_t>(0, (p - phase + s - 1) / s));
        const std::int64_t end =
            std::max(first, std::min(pl.width, g.width + p - phase <= 0 ? 0 : (g.width + p - phase - 1) / s + 1));
        std::fill(row, row + first, 0.0f);
        if (s == 1)
          std::memcpy(row + first, src + first + phase - p, sizeof(float) * static_cast<std::size_t>(end - first));
        else
          for (std::int64_t j = first; j < end; ++j) row[j] = src[j * s + phase - p];
        std::fill(row + end, row + pl.width, 0.0f);
      }
    }
}

// The weights as [ceil(O/kOb)][C][kh·kw][kOb], zero-padded in the last block.
std::vector<float> pack_weights(const Conv2dGeometry& g, const float* w) {
  const std::int64_t taps = g.kernel_h * g.kernel_w, blocks = (g.out_channels + kOb - 1) / kOb;
  std::vector<float> packed(static_cast<std::size_t>(blocks * g.in_channels * taps * kOb), 0.0f);
  for (std::int64_t o = 0; o < g.out_channels; ++o)
    for (std::int64_t c = 0; c < g.in_channels; ++c)
      for (std::int64_t t = 0; t < taps; ++t)
        packed[static_cast<std::size_t>((((o / kOb) * g.in_channels + c) * taps + t) * kOb + o % kOb)] =
            w[(o * g.in_channels + c) * taps + t];
  return packed;
}

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
__attribute__((target("avx2,fma"))) void block(const float* planes, const float* wblock, const std::int64_t* tap_offset,
                                               std::int64_t taps, std::int64_t channels, std::int64_t channel_stride,
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

// All output channels and vectors of one example, from its filled phase planes.
__attribute__((target("avx2,fma"))) void example(const Conv2dGeometry& g, const Planes& pl, const float* planes,
                                                 const std::vector<float>& packed,
                                                 const std::vector<std::int64_t>& tap_offset,
                                                 const std::vector<OutVector>& vectors, const float* bias, float* y_n,
                                                 std::int64_t o_begin, std::int64_t o_end) {
  const std::int64_t taps = g.kernel_h * g.kernel_w, out_plane = g.out_height() * g.out_width();
  const auto nv = static_cast<std::int64_t>(vectors.size());
  for (std::int64_t o0 = o_begin; o0 < o_end; o0 += kOb) {
    const int ob = static_cast<int>(std::min<std::int64_t>(kOb, g.out_channels - o0));
    const float* wblock = packed.data() + (o0 / kOb) * g.in_channels * taps * kOb;
    std::int64_t v = 0;
    for (; v + kVb <= nv; v += kVb)
      block<kVb>(planes, wblock, tap_offset.data(), taps, g.in_channels, pl.channel_stride(), &vectors[v], bias, o0, ob,
                 out_plane, y_n);
    if (nv - v == 2)
      block<2>(planes, wblock, tap_offset.data(), taps, g.in_channels, pl.channel_stride(), &vectors[v], bias, o0, ob,
               out_plane, y_n);
    else if (nv - v == 1)
      block<1>(planes, wblock, tap_offset.data(), taps, g.in_channels, pl.channel_stride(), &vectors[v], bias, o0, ob,
               out_plane, y_n);
  }
}

}  // namespace

bool direct_conv_applies(const Conv2dGeometry& g) {
  static const bool cpu_has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return cpu_has && g.kernel_h >= 2 && g.kernel_h <= 5 && g.kernel_w >= 2 && g.kernel_w <= 5 && g.stride >= 1 &&
         g.stride <= 2;
}

void conv2d_forward_direct(const Conv2dGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const Planes pl = planes_for(g);
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width(), s = g.stride;
  const std::int64_t per_row = (ow_n + kLanes - 1) / kLanes;
  // Tap (ki, kj) of every vector: phase kj mod s, row offset ki, column offset ⌊kj/s⌋.
  std::vector<std::int64_t> tap_offset;
  for (std::int64_t ki = 0; ki < g.kernel_h; ++ki)
    for (std::int64_t kj = 0; kj < g.kernel_w; ++kj)
      tap_offset.push_back((kj % s) * pl.phase_stride(g.in_channels) + ki * pl.width + kj / s);
  std::vector<OutVector> vectors;
  for (std::int64_t oh = 0; oh < oh_n; ++oh)
    for (std::int64_t k = 0; k < per_row; ++k)
      vectors.push_back({oh * s * pl.width + k * kLanes, oh * ow_n + k * kLanes,
                         static_cast<int>(std::min<std::int64_t>(kLanes, ow_n - k * kLanes))});
  const std::vector<float> packed = pack_weights(g, w);
  const std::int64_t x_stride = g.in_channels * g.height * g.width, y_stride = g.out_channels * oh_n * ow_n;
  const int threads = omp_get_max_threads();
  const auto plane_floats = static_cast<std::size_t>(pl.floats(g.in_channels));
  if (g.batch >= threads || g.out_channels <= kOb) {
    // One example per thread at a time; each thread fills its own planes.
    const int team = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(g.batch, threads)));
    std::vector<float> buffers(plane_floats * static_cast<std::size_t>(team));
#pragma omp parallel num_threads(team)
    {
      float* mine = buffers.data() + plane_floats * static_cast<std::size_t>(omp_get_thread_num());
#pragma omp for schedule(static)
      for (std::int64_t n = 0; n < g.batch; ++n) {
        fill_planes(g, pl, x + n * x_stride, mine);
        example(g, pl, mine, packed, tap_offset, vectors, bias, y + n * y_stride, 0, g.out_channels);
      }
    }
    return;
  }
  // Fewer examples than threads: share one example's planes and split its output channels.
  std::vector<float> buffer(plane_floats);
  const std::int64_t blocks = (g.out_channels + kOb - 1) / kOb;
  for (std::int64_t n = 0; n < g.batch; ++n) {
    fill_planes(g, pl, x + n * x_stride, buffer.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t b = 0; b < blocks; ++b)
      example(g, pl, buffer.data(), packed, tap_offset, vectors, bias, y + n * y_stride, b * kOb,
              std::min(g.out_channels, (b + 1) * kOb));
  }
}

}  // namespace aegis::kernels::cpu::detail
