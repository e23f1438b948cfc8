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

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cpu/conv_block.h"

namespace aegis::kernels::cpu::detail {

namespace {

Planes planes_for(const Conv2dGeometry& g) {
  const std::int64_t vectors_per_row = (g.out_width() + kLanes - 1) / kLanes;
  // Columns read: up to (vectors_per_row·8 − 1) + ⌊(kw − 1)/s⌋; rows: h'·s + ki ≤ H + 2p − 1.
  return {g.stride, g.height + 2 * g.padding, vectors_per_row * kLanes + (g.kernel_w - 1) / g.stride};
}

}  // namespace

void fill_planes(const Conv2dGeometry& g, const Planes& pl, const float* x, float* out) {
  const std::int64_t s = pl.stride, p = g.padding, width = pl.width;
  for (std::int64_t phase = 0; phase < s; ++phase) {
    // Columns j with 0 ≤ j·s + φ − p < W hold image pixels; the rest are padding. Plain loops
    // rather than memset/memcpy: the rows are short (10 floats for an 8×8 image).
    const std::int64_t first = std::min(width, std::max<std::int64_t>(0, (p - phase + s - 1) / s));
    const std::int64_t end =
        std::max(first, std::min(width, g.width + p - phase <= 0 ? 0 : (g.width + p - phase - 1) / s + 1));
    const std::int64_t shift = phase - p;
    for (std::int64_t c = 0; c < g.in_channels; ++c) {
      const float* xc = x + c * g.height * g.width;
      float* dst = out + phase * pl.phase_stride(g.in_channels) + c * pl.channel_stride();
      for (std::int64_t r = 0; r < pl.rows; ++r) {
        float* row = dst + r * width;
        const std::int64_t ih = r - p;
        if (ih < 0 || ih >= g.height) {
          for (std::int64_t j = 0; j < width; ++j) row[j] = 0.0f;
          continue;
        }
        const float* src = xc + ih * g.width;
        for (std::int64_t j = 0; j < first; ++j) row[j] = 0.0f;
        if (s == 1)
          for (std::int64_t j = first; j < end; ++j) row[j] = src[j + shift];
        else
          for (std::int64_t j = first; j < end; ++j) row[j] = src[j * s + shift];
        for (std::int64_t j = end; j < width; ++j) row[j] = 0.0f;
      }
    }
  }
}

namespace {
std::atomic<int> g_isa_limit{static_cast<int>(Isa::Avx512)};
}  // namespace

Isa conv_isa() noexcept {
  static const Isa detected = __builtin_cpu_supports("avx512f")                                 ? Isa::Avx512
                              : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Isa::Avx2
                                                                                                : Isa::Baseline;
  return static_cast<Isa>(std::min(static_cast<int>(detected), g_isa_limit.load(std::memory_order_relaxed)));
}

void limit_conv_isa(Isa most) noexcept {
  g_isa_limit.store(static_cast<int>(most), std::memory_order_relaxed);
}

std::vector<float> pack_weights(const float* w, std::int64_t out_channels, std::int64_t in_channels,
                                std::int64_t taps) {
  const std::int64_t blocks = (out_channels + kOb - 1) / kOb;
  std::vector<float> packed(static_cast<std::size_t>(blocks * in_channels * taps * kOb), 0.0f);
  for (std::int64_t o = 0; o < out_channels; ++o)
    for (std::int64_t c = 0; c < in_channels; ++c)
      for (std::int64_t t = 0; t < taps; ++t)
        packed[static_cast<std::size_t>((((o / kOb) * in_channels + c) * taps + t) * kOb + o % kOb)] =
            w[(o * in_channels + c) * taps + t];
  return packed;
}

bool direct_conv_applies(const Conv2dGeometry& g) {
  return conv_isa() >= Isa::Avx2 && g.kernel_h >= 2 && g.kernel_h <= 5 && g.kernel_w >= 2 && g.kernel_w <= 5 &&
         g.stride >= 1 && g.stride <= 2 && g.dilation == 1;
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
  const std::int64_t taps = g.kernel_h * g.kernel_w, out_plane = oh_n * ow_n;
  // With AVX-512 the vectors go in pairs, two per zmm register (an odd last one with an empty
  // partner: valid 0, reading its own input again).
  const bool has_avx512 = conv_isa() == Isa::Avx512;
  std::vector<OutVector> lo, hi;
  for (std::size_t k = 0; k < vectors.size(); k += 2) {
    lo.push_back(vectors[k]);
    hi.push_back(k + 1 < vectors.size() ? vectors[k + 1]
                                        : OutVector{vectors[k].plane_offset, vectors[k].out_offset, 0});
  }
  const std::vector<float> packed = pack_weights(w, g.out_channels, g.in_channels, taps);
  const auto run = [&](const float* planes, std::int64_t o_begin, std::int64_t o_end, float* y_n) {
    if (has_avx512)
      all_blocks512(planes, packed, tap_offset.data(), taps, g.in_channels, pl.channel_stride(), lo, hi, bias,
                    g.out_channels, o_begin, o_end, out_plane, y_n);
    else
      all_blocks(planes, packed, tap_offset.data(), taps, g.in_channels, pl.channel_stride(), vectors, bias,
                 g.out_channels, o_begin, o_end, out_plane, y_n);
  };
  const std::int64_t x_stride = g.in_channels * g.height * g.width, y_stride = g.out_channels * oh_n * ow_n;
  const int threads = omp_get_max_threads();
  const auto plane_floats = static_cast<std::size_t>(pl.floats(g.in_channels));
  if (g.batch >= threads || g.out_channels <= kOb) {
    // One example per thread at a time; each thread fills its own planes.
    const int team = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(g.batch, threads)));
    // Scratch that every call overwrites before reading: allocated without zeroing.
    std::unique_ptr<float[]> buffers(new float[plane_floats * static_cast<std::size_t>(team)]);
#pragma omp parallel num_threads(team)
    {
      float* mine = buffers.get() + plane_floats * static_cast<std::size_t>(omp_get_thread_num());
#pragma omp for schedule(static)
      for (std::int64_t n = 0; n < g.batch; ++n) {
        fill_planes(g, pl, x + n * x_stride, mine);
        run(mine, 0, g.out_channels, y + n * y_stride);
      }
    }
    return;
  }
  // Fewer examples than threads: share one example's planes and split its output channels.
  std::unique_ptr<float[]> buffer(new float[plane_floats]);
  const std::int64_t blocks = (g.out_channels + kOb - 1) / kOb;
  for (std::int64_t n = 0; n < g.batch; ++n) {
    fill_planes(g, pl, x + n * x_stride, buffer.get());
#pragma omp parallel for schedule(static)
    for (std::int64_t b = 0; b < blocks; ++b)
      run(buffer.get(), b * kOb, std::min(g.out_channels, (b + 1) * kOb), y + n * y_stride);
  }
}

}  // namespace aegis::kernels::cpu::detail
