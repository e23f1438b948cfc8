// Winograd convolution F(2×2, 3×3) for the CPU forward pass of 3×3 stride-1 layers (Lavin &
// Gray 2016, "Fast Algorithms for Convolutional Neural Networks", §4, eq. 8):
//   Y = Aᵀ [ Σ_c (G g_{o,c} Gᵀ) ⊙ (Bᵀ d_c B) ] A
// for each 2×2 output tile Y of output channel o and its 4×4 input tile d_c of every input
// channel c (the padded input, tiles overlapping by 2), with
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 −1 −1].
// The sum over c is, for each of the 16 positions ξ of the transformed tile, a matrix product
// M_ξ[o, t] = Σ_c U_ξ[o, c]·V_ξ[c, t] over the tiles t: 16 multiplications per tile, channel pair
// and 4 outputs instead of 36, 2.25× fewer. Per example: the input is copied into zero-padded
// planes; V = Bᵀ d B is formed for 8 tiles at a time from 4 rows of 18 floats split into even
// and odd columns; the 16 products run on the
// direct convolution's register-blocked micro-kernel (one "tap", the channels as its inner loop);
// Aᵀ M A gives 2 × 8 tiles' outputs per row, interleaved into 16 consecutive outputs.
// The result differs from the direct sum by rounding only: the transforms add and subtract
// (and halve, exactly) at most 9 terms before and 4 after the product.
#include "kernels/cpu/conv_winograd.h"

#include <omp.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/cpu/conv_block.h"

namespace aegis::kernels::cpu::detail {

namespace {

constexpr int kXi = 16;  // positions of a transformed 4×4 tile

// Tiles in rows of cols_padded (a multiple of 8), or — when an output row has 4 tiles (7 or 8
// columns) — "paired": a vector holds the 4 tiles of two consecutive tile rows, tile_rows is even
// and cols_padded = 4.
struct Tiling {
  std::int64_t tile_rows, tile_cols, cols_padded;
  bool paired() const { return cols_padded == 4; }
  std::int64_t tiles_padded() const { return tile_rows * cols_padded; }
  // Floats between the 16 ξ-slices of V (channels·tiles) or M (output channels·tiles). Padded by
  // 24 floats: at power-of-two distances the 16 streams of a transform would all fall into the
  // same L1 cache sets and evict each other.
  std::int64_t xi_stride(std::int64_t channels) const { return channels * tiles_padded() + 24; }
};

Tiling tiling_for(const Conv2dGeometry& g) {
  const std::int64_t tr = (g.out_height() + 1) / 2, tc = (g.out_width() + 1) / 2;
  if (tc == 4) return {(tr + 1) / 2 * 2, tc, 4};
  return {tr, tc, (tc + kLanes - 1) / kLanes * kLanes};
}

// U_ξ = G g Gᵀ for every (o, c), packed per ξ as the micro-kernel's weights ([O/kOb][C][1][kOb]).
std::vector<std::vector<float>> transform_weights(const Conv2dGeometry& g, const float* w) {
  const std::int64_t oc = g.out_channels * g.in_channels;
  std::vector<float> u(static_cast<std::size_t>(kXi * oc));
  // In parallel: for 64 × 64 channels this is 4096 small transforms, and a serial loop here
  // would leave the other threads waiting at the next parallel region.
#pragma omp parallel for schedule(static) if (oc >= 256)
  for (std::int64_t k = 0; k < oc; ++k) {
    const float* f = w + 9 * k;
    double gg[4][3];  // G·g
    for (int j = 0; j < 3; ++j) {
      gg[0][j] = f[j];
      gg[1][j] = 0.5 * (static_cast<double>(f[j]) + f[3 + j] + f[6 + j]);
      gg[2][j] = 0.5 * (static_cast<double>(f[j]) - f[3 + j] + f[6 + j]);
      gg[3][j] = f[6 + j];
    }
    for (int i = 0; i < 4; ++i) {
      const double row[4] = {gg[i][0], 0.5 * (gg[i][0] + gg[i][1] + gg[i][2]), 0.5 * (gg[i][0] - gg[i][1] + gg[i][2]),
                             gg[i][2]};
      for (int j = 0; j < 4; ++j) u[static_cast<std::size_t>((i * 4 + j) * oc + k)] = static_cast<float>(row[j]);
    }
  }
  std::vector<std::vector<float>> packed;
  for (int xi = 0; xi < kXi; ++xi) packed.push_back(pack_weights(u.data() + xi * oc, g.out_channels, g.in_channels, 1));
  return packed;
}

// Even and odd elements of the 16 floats p[0 .. 8) followed by q[0 .. 8): p[0], p[2], p[4], p[6],
// q[0], …, q[6] and p[1], …, q[7].
__attribute__((target("avx2,fma"))) inline void deinterleave(const float* p, const float* q, __m256& even,
                                                             __m256& odd) {
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(q);
  // Within 128-bit halves: a0 a2 b0 b2 | a4 a6 b4 b6; then 64-bit pairs reordered 0, 2, 1, 3.
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

// V[ξ][c][t] = (Bᵀ d B)_ξ for every channel and tile of one example, from its padded planes:
// tile (tr, tc) reads rows 2·tr + i and columns 2·tc + j; 8 tiles at once from 4 rows of 18
// consecutive floats, split into even and odd columns.
__attribute__((target("avx2,fma"))) void transform_input(const Conv2dGeometry& g, const Planes& pl, const Tiling& tl,
                                                         const float* planes, float* v) {
  const std::int64_t cs = pl.channel_stride(), xi_stride = tl.xi_stride(g.in_channels);
  const std::int64_t row_step = tl.paired() ? 2 : 1, col_step = tl.paired() ? 4 : kLanes;
  for (std::int64_t c = 0; c < g.in_channels; ++c)
    for (std::int64_t tr = 0; tr < tl.tile_rows; tr += row_step)
      for (std::int64_t t0 = 0; t0 < tl.cols_padded; t0 += col_step) {
        __m256 d[4][4];
        for (int i = 0; i < 4; ++i) {
          const float* row = planes + c * cs + (2 * tr + i) * pl.width + 2 * t0;
          // Paired: the second half of the lanes comes from tile row tr + 1, two input rows down.
          const float* next = tl.paired() ? row + 2 * pl.width : row + kLanes;
          deinterleave(row, next, d[i][0], d[i][1]);
          deinterleave(row + 2, next + 2, d[i][2], d[i][3]);
        }
        __m256 b[4][4];  // Bᵀ d
        for (int j = 0; j < 4; ++j) {
          b[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
          b[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
          b[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
          b[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
        }
        float* out = v + c * tl.tiles_padded() + tr * tl.cols_padded + t0;
        for (int i = 0; i < 4; ++i) {  // (Bᵀ d) B
          _mm256_storeu_ps(out + (i * 4 + 0) * xi_stride, _mm256_sub_ps(b[i][0], b[i][2]));
          _mm256_storeu_ps(out + (i * 4 + 1) * xi_stride, _mm256_add_ps(b[i][1], b[i][2]));
          _mm256_storeu_ps(out + (i * 4 + 2) * xi_stride, _mm256_sub_ps(b[i][2], b[i][1]));
          _mm256_storeu_ps(out + (i * 4 + 3) * xi_stride, _mm256_sub_ps(b[i][1], b[i][3]));
        }
      }
}

// y_o[row, col … col + 7] = v where inside the output (masked at the right edge).
__attribute__((target("avx2,fma"))) inline void store_row_part(float* y_o, std::int64_t row, std::int64_t col,
                                                               std::int64_t oh_n, std::int64_t ow_n, __m256 v) {
  if (row >= oh_n || col >= ow_n) return;
  const std::int64_t valid = std::min<std::int64_t>(kLanes, ow_n - col);
  if (valid == kLanes)
    _mm256_storeu_ps(y_o + row * ow_n + col, v);
  else
    _mm256_maskstore_ps(y_o + row * ow_n + col, lane_mask(static_cast<int>(valid)), v);
}

// y[o] = Aᵀ M A (+ bias) for output channels [o_begin, o_end) of one example.
__attribute__((target("avx2,fma"))) void transform_output(const Conv2dGeometry& g, const Tiling& tl, const float* m,
                                                          const float* bias, std::int64_t o_begin, std::int64_t o_end,
                                                          float* y_n) {
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width();
  const std::int64_t xi_stride = tl.xi_stride(g.out_channels);
  const std::int64_t row_step = tl.paired() ? 2 : 1, col_step = tl.paired() ? 4 : kLanes;
  for (std::int64_t o = o_begin; o < o_end; ++o) {
    const __m256 b = _mm256_set1_ps(bias ? bias[o] : 0.0f);
    float* y_o = y_n + o * oh_n * ow_n;
    for (std::int64_t tr = 0; tr < tl.tile_rows; tr += row_step)
      for (std::int64_t t0 = 0; t0 < tl.cols_padded; t0 += col_step) {
        const float* in = m + o * tl.tiles_padded() + tr * tl.cols_padded + t0;
        __m256 a[2][4];  // Aᵀ M
        for (int j = 0; j < 4; ++j) {
          const __m256 m0 = _mm256_loadu_ps(in + (0 * 4 + j) * xi_stride);
          const __m256 m1 = _mm256_loadu_ps(in + (1 * 4 + j) * xi_stride);
          const __m256 m2 = _mm256_loadu_ps(in + (2 * 4 + j) * xi_stride);
          const __m256 m3 = _mm256_loadu_ps(in + (3 * 4 + j) * xi_stride);
          a[0][j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
          a[1][j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
        }
        for (int i = 0; i < 2; ++i) {  // (Aᵀ M) A, then lanes (tile t, column j) → output 2t + j
          const __m256 left = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[i][0], a[i][1]), a[i][2]), b);
          const __m256 right = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(a[i][1], a[i][2]), a[i][3]), b);
          const __m256 lo = _mm256_unpacklo_ps(left, right), hi = _mm256_unpackhi_ps(left, right);
          const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20), second = _mm256_permute2f128_ps(lo, hi, 0x31);
          // Paired: `second` is output row 2·(tr + 1) + i, columns 0 … 7; else the same row as
          // `first`, 8 columns further.
          const std::int64_t oh = 2 * tr + i, oh2 = tl.paired() ? oh + 2 : oh;
          const std::int64_t col = 2 * t0, col2 = tl.paired() ? 0 : col + kLanes;
          store_row_part(y_o, oh, col, oh_n, ow_n, first);
          store_row_part(y_o, oh2, col2, oh_n, ow_n, second);
        }
      }
  }
}

// The 16 products on 512-bit vectors (CPUs with AVX-512 and full-width units run twice the
// multiply-adds per cycle): out[o, t] = Σ_c U[o, c]·in[c, t] for every output channel and every
// t < tiles, tiles a multiple of 16. A register block is NB packed blocks of kOb output channels ×
// VB vectors of 16 tiles; NB·kOb·VB ≥ 8 independent accumulators keep both FMA pipes busy.
template <int NB, int VB>
__attribute__((target("avx512f"))) void block512(const float* in, const float* packed, std::int64_t channels,
                                                 std::int64_t tiles, std::int64_t t, std::int64_t o0,
                                                 std::int64_t out_channels, float* out) {
  __m512 acc[NB][kOb][VB];
#pragma GCC unroll 8
  for (int nb = 0; nb < NB; ++nb)
#pragma GCC unroll 8
    for (int o = 0; o < kOb; ++o)
#pragma GCC unroll 8
      for (int v = 0; v < VB; ++v) acc[nb][o][v] = _mm512_setzero_ps();
  const float* w[NB];
#pragma GCC unroll 8
  for (int nb = 0; nb < NB; ++nb) w[nb] = packed + (o0 / kOb + nb) * channels * kOb;
  for (std::int64_t c = 0; c < channels; ++c) {
    __m512 x[VB];
#pragma GCC unroll 8
    for (int v = 0; v < VB; ++v) x[v] = _mm512_loadu_ps(in + c * tiles + t + 16 * v);
#pragma GCC unroll 8
    for (int nb = 0; nb < NB; ++nb)
#pragma GCC unroll 8
      for (int o = 0; o < kOb; ++o) {
        const __m512 wv = _mm512_set1_ps(w[nb][c * kOb + o]);
#pragma GCC unroll 8
        for (int v = 0; v < VB; ++v) acc[nb][o][v] = _mm512_fmadd_ps(wv, x[v], acc[nb][o][v]);
      }
  }
#pragma GCC unroll 8
  for (int nb = 0; nb < NB; ++nb)
#pragma GCC unroll 8
    for (int o = 0; o < kOb; ++o) {
      const std::int64_t oo = o0 + nb * kOb + o;
      if (oo >= out_channels) break;
#pragma GCC unroll 8
      for (int v = 0; v < VB; ++v) _mm512_storeu_ps(out + oo * tiles + t + 16 * v, acc[nb][o][v]);
    }
}

template <int NB, int VB>
__attribute__((target("avx512f"))) void columns512(const float* in, const float* packed, std::int64_t channels,
                                                   std::int64_t tiles, std::int64_t t_begin, std::int64_t o0,
                                                   std::int64_t out_channels, float* out) {
  for (std::int64_t t = t_begin; t + 16 * VB <= tiles; t += 16 * VB)
    block512<NB, VB>(in, packed, channels, tiles, t, o0, out_channels, out);
}

__attribute__((target("avx512f"))) void product512(const float* in, const std::vector<float>& packed,
                                                   std::int64_t channels, std::int64_t tiles, std::int64_t out_channels,
                                                   float* out) {
  const std::int64_t vectors = tiles / 16, blocks = (out_channels + kOb - 1) / kOb;
  const float* w = packed.data();
  if (vectors >= 4) {  // one block of kOb channels × 4 vectors, then the last 1–3 vectors
    const std::int64_t main = vectors / 4 * 4 * 16;
    for (std::int64_t b = 0; b < blocks; ++b) {
      const std::int64_t o0 = b * kOb;
      columns512<1, 4>(in, w, channels, tiles, 0, o0, out_channels, out);
      switch (vectors % 4) {
        case 3:
          block512<1, 3>(in, w, channels, tiles, main, o0, out_channels, out);
          break;
        case 2:
          block512<1, 2>(in, w, channels, tiles, main, o0, out_channels, out);
          break;
        case 1:
          block512<1, 1>(in, w, channels, tiles, main, o0, out_channels, out);
          break;
        default:
          break;
      }
    }
    return;
  }
  // 1–3 vectors: two blocks of kOb channels at a time (a last odd block alone).
  std::int64_t b = 0;
  for (; b + 2 <= blocks; b += 2) {
    if (vectors == 3) block512<2, 3>(in, w, channels, tiles, 0, b * kOb, out_channels, out);
    if (vectors == 2) block512<2, 2>(in, w, channels, tiles, 0, b * kOb, out_channels, out);
    if (vectors == 1) block512<2, 1>(in, w, channels, tiles, 0, b * kOb, out_channels, out);
  }
  if (b < blocks) {
    if (vectors == 3) block512<1, 3>(in, w, channels, tiles, 0, b * kOb, out_channels, out);
    if (vectors == 2) block512<1, 2>(in, w, channels, tiles, 0, b * kOb, out_channels, out);
    if (vectors == 1) block512<1, 1>(in, w, channels, tiles, 0, b * kOb, out_channels, out);
  }
}

}  // namespace

bool winograd_conv_applies(const Conv2dGeometry& g) {
  // Below 8 channels in or out the transforms cost more than the products they save.
  return conv_isa() >= Isa::Avx2 && g.kernel_h == 3 && g.kernel_w == 3 && g.stride == 1 && g.dilation == 1 &&
         g.in_channels >= 8 && g.out_channels >= 8 && g.out_height() >= 2 && g.out_width() >= 2;
}

void conv2d_forward_winograd(const Conv2dGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const Tiling tl = tiling_for(g);
  // The padded input as plain planes (stride 1) with rows 0 … 2·tile_rows + 1 and columns
  // 0 … 2·cols_padded + 1 (zero beyond the image).
  const Planes pl{1, std::max(g.height + 2 * g.padding, 2 * tl.tile_rows + 2), 2 * tl.cols_padded + 2};
  const std::vector<std::vector<float>> u = transform_weights(g, w);
  std::vector<OutVector> vectors;  // every 8 tiles, in V's and M's tile layout
  for (std::int64_t t = 0; t < tl.tiles_padded(); t += kLanes) vectors.push_back({t, t, kLanes});
  const std::int64_t zero_tap = 0;
  // 512-bit products where the CPU has AVX-512 (every tile count here is a multiple of 16 but for
  // rows of 8 tiles with an odd number of tile rows).
  const bool wide = conv_isa() == Isa::Avx512 && tl.tiles_padded() % 16 == 0;
  const auto plane_floats = static_cast<std::size_t>(pl.floats(g.in_channels));
  const auto v_floats = static_cast<std::size_t>(kXi * tl.xi_stride(g.in_channels));
  const auto m_floats = static_cast<std::size_t>(kXi * tl.xi_stride(g.out_channels));
  const std::size_t per_thread = plane_floats + v_floats + m_floats;
  const std::int64_t x_stride = g.in_channels * g.height * g.width;
  const std::int64_t y_stride = g.out_channels * g.out_height() * g.out_width();
  const int team = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(g.batch, omp_get_max_threads())));
  // Scratch that every example overwrites before reading: allocated without zeroing.
  std::unique_ptr<float[]> buffers(new float[per_thread * static_cast<std::size_t>(team)]);
#pragma omp parallel num_threads(team)
  {
    float* planes = buffers.get() + per_thread * static_cast<std::size_t>(omp_get_thread_num());
    float* v = planes + plane_floats;
    float* m = v + v_floats;
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < g.batch; ++n) {
      fill_planes(g, pl, x + n * x_stride, planes);
      transform_input(g, pl, tl, planes, v);
      for (int xi = 0; xi < kXi; ++xi) {
        const float* v_xi = v + xi * tl.xi_stride(g.in_channels);
        float* m_xi = m + xi * tl.xi_stride(g.out_channels);
        if (wide)
          product512(v_xi, u[static_cast<std::size_t>(xi)], g.in_channels, tl.tiles_padded(), g.out_channels, m_xi);
        else
          all_blocks(v_xi, u[static_cast<std::size_t>(xi)], &zero_tap, 1, g.in_channels, tl.tiles_padded(), vectors,
                     nullptr, g.out_channels, 0, g.out_channels, tl.tiles_padded(), m_xi);
      }
      transform_output(g, tl, m, bias, 0, g.out_channels, y + n * y_stride);
    }
  }
}

}  // namespace aegis::kernels::cpu::detail
