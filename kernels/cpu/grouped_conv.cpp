#include <algorithm>

#include "kernels/grouped_conv.h"

namespace aegis::kernels::cpu {

namespace {

// The output positions j (of `out_n`) whose tap a lands inside [0, in_n): j·s − p + a ∈ [0, in_n).
void valid_range(std::int64_t a, std::int64_t stride, std::int64_t padding, std::int64_t in_n, std::int64_t out_n,
                 std::int64_t& lo, std::int64_t& hi) {
  const std::int64_t first = padding - a;  // j·s ≥ first
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const std::int64_t last = in_n - 1 + padding - a;  // j·s ≤ last
  hi = last < 0 ? -1 : std::min(last / stride, out_n - 1);
}

}  // namespace

void grouped_conv2d_forward(const Conv2dGeometry& g, std::int64_t groups, const float* x, const float* w,
                            const float* bias, float* y) {
  const std::int64_t oh = g.out_height(), ow = g.out_width(), cg = g.in_channels / groups,
                     og = g.out_channels / groups, kk = g.kernel_h * g.kernel_w, hw = g.height * g.width;
#pragma omp parallel for schedule(static) if (g.batch * g.out_channels > 1)
  for (std::int64_t plane = 0; plane < g.batch * g.out_channels; ++plane) {
    const std::int64_t n = plane / g.out_channels, o = plane % g.out_channels, q = o / og;
    float* yp = y + plane * oh * ow;
    std::fill(yp, yp + oh * ow, bias ? bias[o] : 0.0f);
    for (std::int64_t ci = 0; ci < cg; ++ci) {
      const float* xp = x + (n * g.in_channels + q * cg + ci) * hw;
      const float* wp = w + (o * cg + ci) * kk;
      for (std::int64_t a = 0; a < g.kernel_h; ++a) {
        std::int64_t i_lo, i_hi;
        valid_range(a, g.stride, g.padding, g.height, oh, i_lo, i_hi);
        for (std::int64_t b = 0; b < g.kernel_w; ++b) {
          std::int64_t j_lo, j_hi;
          valid_range(b, g.stride, g.padding, g.width, ow, j_lo, j_hi);
          const float wv = wp[a * g.kernel_w + b];
          for (std::int64_t i = i_lo; i <= i_hi; ++i) {
            const float* xr = xp + (i * g.stride - g.padding + a) * g.width - g.padding + b;
            float* yr = yp + i * ow;
            for (std::int64_t j = j_lo; j <= j_hi; ++j) yr[j] += wv * xr[j * g.stride];
          }
        }
      }
    }
  }
}

void grouped_conv2d_backward_data(const Conv2dGeometry& g, std::int64_t groups, const float* gy, const float* w,
                                  float* dx) {
  const std::int64_t oh = g.out_height(), ow = g.out_width(), cg = g.in_channels / groups,
                     og = g.out_channels / groups, kk = g.kernel_h * g.kernel_w, hw = g.height * g.width;
#pragma omp parallel for schedule(static) if (g.batch * g.in_channels > 1)
  for (std::int64_t plane = 0; plane < g.batch * g.in_channels; ++plane) {
    const std::int64_t n = plane / g.in_channels, c = plane % g.in_channels, q = c / cg, ci = c % cg;
    float* dxp = dx + plane * hw;
    std::fill(dxp, dxp + hw, 0.0f);
    for (std::int64_t o = q * og; o < (q + 1) * og; ++o) {
      const float* gyp = gy + (n * g.out_channels + o) * oh * ow;
      const float* wp = w + (o * cg + ci) * kk;
      for (std::int64_t a = 0; a < g.kernel_h; ++a) {
        std::int64_t i_lo, i_hi;
        valid_range(a, g.stride, g.padding, g.height, oh, i_lo, i_hi);
        for (std::int64_t b = 0; b < g.kernel_w; ++b) {
          std::int64_t j_lo, j_hi;
          valid_range(b, g.stride, g.padding, g.width, ow, j_lo, j_hi);
          const float wv = wp[a * g.kernel_w + b];
          for (std::int64_t i = i_lo; i <= i_hi; ++i) {
            float* dr = dxp + (i * g.stride - g.padding + a) * g.width - g.padding + b;
            const float* gr = gyp + i * ow;
            for (std::int64_t j = j_lo; j <= j_hi; ++j) dr[j * g.stride] += wv * gr[j];
          }
        }
      }
    }
  }
}

void grouped_conv2d_backward_filter(const Conv2dGeometry& g, std::int64_t groups, const float* x, const float* gy,
                                    float* dw) {
  const std::int64_t oh = g.out_height(), ow = g.out_width(), cg = g.in_channels / groups,
                     og = g.out_channels / groups, hw = g.height * g.width;
  const std::int64_t weights = g.out_channels * cg * g.kernel_h * g.kernel_w;
#pragma omp parallel for schedule(static) if (weights > 1)
  for (std::int64_t at = 0; at < weights; ++at) {
    const std::int64_t b = at % g.kernel_w, a = (at / g.kernel_w) % g.kernel_h,
                       ci = (at / (g.kernel_w * g.kernel_h)) % cg, o = at / (g.kernel_w * g.kernel_h * cg);
    const std::int64_t c = (o / og) * cg + ci;
    std::int64_t i_lo, i_hi, j_lo, j_hi;
    valid_range(a, g.stride, g.padding, g.height, oh, i_lo, i_hi);
    valid_range(b, g.stride, g.padding, g.width, ow, j_lo, j_hi);
    double total = 0.0;  // N·H'·W' terms: accumulate each example's plane in float, the sum in double
    for (std::int64_t n = 0; n < g.batch; ++n) {
      const float* xp = x + (n * g.in_channels + c) * hw;
      const float* gyp = gy + (n * g.out_channels + o) * oh * ow;
      float plane = 0.0f;
      for (std::int64_t i = i_lo; i <= i_hi; ++i) {
        const float* xr = xp + (i * g.stride - g.padding + a) * g.width - g.padding + b;
        const float* gr = gyp + i * ow;
        for (std::int64_t j = j_lo; j <= j_hi; ++j) plane += gr[j] * xr[j * g.stride];
      }
      total += plane;
    }
    dw[at] = static_cast<float>(total);
  }
}

}  // namespace aegis::kernels::cpu
