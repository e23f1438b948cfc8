#include "kernels/pool.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 14;  // output elements below which one thread is faster

struct Span {
  std::int64_t lo, hi;  // half-open
};
// The input rows [lo, hi) of output row `out`'s window that lie inside an image of `size` rows.
Span taps_inside(std::int64_t out, std::int64_t stride, std::int64_t padding, std::int64_t kernel, std::int64_t size) {
  const std::int64_t first = out * stride - padding;
  return {std::max<std::int64_t>(first, 0), std::min(first + kernel, size)};
}
// Outputs o in [0, out_size) whose tap o·stride + offset lies in [0, in_size) (offset = kj − padding).
Span outputs_inside(std::int64_t offset, std::int64_t stride, std::int64_t in_size, std::int64_t out_size) {
  std::int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  std::int64_t hi = in_size - offset <= 0 ? 0 : (in_size - offset - 1) / stride + 1;
  hi = std::min(hi, out_size);
  lo = std::min(lo, hi);
  return {lo, hi};
}
// outputs_inside for every kernel column kj, computed once per call (it divides).
std::vector<Span> column_spans(const Pool2dGeometry& g) {
  std::vector<Span> spans(static_cast<std::size_t>(g.kernel));
  for (std::int64_t kj = 0; kj < g.kernel; ++kj)
    spans[static_cast<std::size_t>(kj)] = outputs_inside(kj - g.padding, g.stride, g.width, g.out_width());
  return spans;
}
}  // namespace

namespace {
// Inference (no argmax wanted): the window maxima alone, NaN propagating. With stride 1 the taps
// of a row of outputs are contiguous, so the inner loop is a plain vectorized max.
void max_pool2d_values(const Pool2dGeometry& g, const float* x, float* y) {
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width();
  const std::int64_t planes = g.batch * g.channels, in_plane = g.height * g.width, out_plane = oh_n * ow_n;
  const std::vector<Span> col_spans = column_spans(g);
#pragma omp parallel for schedule(static) if (planes * out_plane > kParallelMin)
  for (std::int64_t pl = 0; pl < planes; ++pl) {
    const float* x_p = x + pl * in_plane;
    for (std::int64_t oh = 0; oh < oh_n; ++oh) {
      float* best = y + pl * out_plane + oh * ow_n;
      std::fill(best, best + ow_n, -std::numeric_limits<float>::infinity());
      const Span rows = taps_inside(oh, g.stride, g.padding, g.kernel, g.height);
      for (std::int64_t ih = rows.lo; ih < rows.hi; ++ih) {
        const float* x_row = x_p + ih * g.width;
        for (std::int64_t kj = 0; kj < g.kernel; ++kj) {
          const Span cols = col_spans[static_cast<std::size_t>(kj)];
          const std::int64_t offset = kj - g.padding;
          if (g.stride == 1) {
            const float* src = x_row + offset;
#pragma omp simd
            for (std::int64_t ow = cols.lo; ow < cols.hi; ++ow) {
              const float v = src[ow], cur = best[ow];
              best[ow] = (v > cur) | (v != v) ? v : cur;  // a NaN replaces anything
            }
          } else {
            for (std::int64_t ow = cols.lo; ow < cols.hi; ++ow) {
              const float v = x_row[ow * g.stride + offset], cur = best[ow];
              best[ow] = (v > cur) | (v != v) ? v : cur;
            }
          }
        }
      }
    }
  }
}
}  // namespace

void max_pool2d_forward(const Pool2dGeometry& g, const float* x, float* y, std::int32_t* argmax) {
  if (!argmax) {
    max_pool2d_values(g, x, y);
    return;
  }
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width();
  const std::int64_t planes = g.batch * g.channels, in_plane = g.height * g.width, out_plane = oh_n * ow_n;
  const std::vector<Span> col_spans = column_spans(g);
#pragma omp parallel for schedule(static) if (planes * out_plane > kParallelMin)
  for (std::int64_t pl = 0; pl < planes; ++pl) {
    const float* x_p = x + pl * in_plane;
    for (std::int64_t oh = 0; oh < oh_n; ++oh) {
      float* best = y + pl * out_plane + oh * ow_n;
      std::int32_t* at = argmax + pl * out_plane + oh * ow_n;
      std::fill(best, best + ow_n, -std::numeric_limits<float>::infinity());
      std::fill(at, at + ow_n, -1);
      // Taps in row-major window order, each over the outputs it hits inside the image: every
      // window sees its real elements in the same order as a per-window loop would. Padding is
      // never visited, so it acts as −∞; at < 0 marks a window that has seen nothing yet.
      const Span rows = taps_inside(oh, g.stride, g.padding, g.kernel, g.height);
      for (std::int64_t ih = rows.lo; ih < rows.hi; ++ih) {
        const float* x_row = x_p + ih * g.width;
        for (std::int64_t kj = 0; kj < g.kernel; ++kj) {
          const Span cols = col_spans[static_cast<std::size_t>(kj)];
#pragma omp simd
          for (std::int64_t ow = cols.lo; ow < cols.hi; ++ow) {
            const std::int64_t iw = ow * g.stride + kj - g.padding;
            const float v = x_row[iw], cur = best[ow];
            const std::int32_t cur_at = at[ow];
            // Strict >: the first maximum wins ties. A NaN replaces any non-NaN (NaN propagates).
            // Bitwise | and & keep this branch-free: with random data a branch mispredicts often.
            const bool take = (cur_at < 0) | (v > cur) | (std::isnan(v) & !std::isnan(cur));
            best[ow] = take ? v : cur;
            at[ow] = take ? static_cast<std::int32_t>(ih * g.width + iw) : cur_at;
          }
        }
      }
    }
  }
}

void max_pool2d_backward(const Pool2dGeometry& g, const float* gy, const std::int32_t* argmax, float* dx) {
  const std::int64_t planes = g.batch * g.channels, in_plane = g.height * g.width;
  const std::int64_t out_plane = g.out_height() * g.out_width();
#pragma omp parallel for schedule(static) if (planes * out_plane > kParallelMin)
  for (std::int64_t pl = 0; pl < planes; ++pl) {
    float* dx_p = dx + pl * in_plane;
    std::fill(dx_p, dx_p + in_plane, 0.0f);
    const float* gy_p = gy + pl * out_plane;
    const std::int32_t* arg_p = argmax + pl * out_plane;
    for (std::int64_t q = 0; q < out_plane; ++q) dx_p[arg_p[q]] += gy_p[q];
  }
}

namespace {
// 1/divisor of every output position of a plane (kernels/pool.h), row-major [H', W'].
std::vector<float> inverse_divisors(const Pool2dGeometry& g) {
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width();
  std::vector<float> inv(static_cast<std::size_t>(oh_n * ow_n));
  for (std::int64_t oh = 0; oh < oh_n; ++oh) {
    const std::int64_t rows =
        pool_extent(oh * g.stride - g.padding, g.kernel, g.height, g.padding, g.count_include_pad);
    for (std::int64_t ow = 0; ow < ow_n; ++ow) {
      const std::int64_t cols =
          pool_extent(ow * g.stride - g.padding, g.kernel, g.width, g.padding, g.count_include_pad);
      inv[static_cast<std::size_t>(oh * ow_n + ow)] = 1.0f / static_cast<float>(rows * cols);
    }
  }
  return inv;
}
}  // namespace

void avg_pool2d_forward(const Pool2dGeometry& g, const float* x, float* y) {
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width();
  const std::int64_t planes = g.batch * g.channels, in_plane = g.height * g.width, out_plane = oh_n * ow_n;
  const std::vector<float> inv_area = inverse_divisors(g);
  const std::vector<Span> col_spans = column_spans(g);
#pragma omp parallel for schedule(static) if (planes * out_plane > kParallelMin)
  for (std::int64_t pl = 0; pl < planes; ++pl) {
    const float* x_p = x + pl * in_plane;
    for (std::int64_t oh = 0; oh < oh_n; ++oh) {
      float* total = y + pl * out_plane + oh * ow_n;
      std::fill(total, total + ow_n, 0.0f);
      // Tap by tap in row-major window order (the per-window summation order), skipping padding.
      const Span rows = taps_inside(oh, g.stride, g.padding, g.kernel, g.height);
      for (std::int64_t ih = rows.lo; ih < rows.hi; ++ih) {
        const float* x_row = x_p + ih * g.width;
        for (std::int64_t kj = 0; kj < g.kernel; ++kj) {
          const Span cols = col_spans[static_cast<std::size_t>(kj)];
#pragma omp simd
          for (std::int64_t ow = cols.lo; ow < cols.hi; ++ow) total[ow] += x_row[ow * g.stride + kj - g.padding];
        }
      }
      const float* inv_row = inv_area.data() + oh * ow_n;
      for (std::int64_t ow = 0; ow < ow_n; ++ow) total[ow] *= inv_row[ow];
    }
  }
}

void avg_pool2d_backward(const Pool2dGeometry& g, const float* gy, float* dx) {
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width();
  const std::int64_t planes = g.batch * g.channels, in_plane = g.height * g.width, out_plane = oh_n * ow_n;
  const std::vector<float> inv_area = inverse_divisors(g);
  const std::vector<Span> col_spans = column_spans(g);
  // Each output row's share gy/divisor, formed once rather than once per tap (the same products),
  // in a buffer per thread allocated before the parallel region (an allocation failure throws here).
  const int threads = omp_get_max_threads();
  std::vector<float> shares(static_cast<std::size_t>(threads * ow_n));
#pragma omp parallel num_threads(threads) if (planes * out_plane > kParallelMin)
  {
    float* share = shares.data() + static_cast<std::int64_t>(omp_get_thread_num()) * ow_n;
#pragma omp for schedule(static)
    for (std::int64_t pl = 0; pl < planes; ++pl) {
      float* dx_p = dx + pl * in_plane;
      std::fill(dx_p, dx_p + in_plane, 0.0f);
      for (std::int64_t oh = 0; oh < oh_n; ++oh) {
        const float* gy_row = gy + pl * out_plane + oh * ow_n;
        const float* inv_row = inv_area.data() + oh * ow_n;
        for (std::int64_t ow = 0; ow < ow_n; ++ow) share[ow] = gy_row[ow] * inv_row[ow];
        const Span rows = taps_inside(oh, g.stride, g.padding, g.kernel, g.height);
        for (std::int64_t ih = rows.lo; ih < rows.hi; ++ih) {
          float* dx_row = dx_p + ih * g.width;
          for (std::int64_t kj = 0; kj < g.kernel; ++kj) {
            const Span cols = col_spans[static_cast<std::size_t>(kj)];
#pragma omp simd
            for (std::int64_t ow = cols.lo; ow < cols.hi; ++ow) dx_row[ow * g.stride + kj - g.padding] += share[ow];
          }
        }
      }
    }
  }
}

}  // namespace aegis::kernels::cpu
