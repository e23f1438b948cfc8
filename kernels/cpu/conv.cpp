#include "kernels/conv.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/blas.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/conv_winograd.h"

namespace aegis::kernels::cpu {

namespace {

// Output positions o in [0, out_size) whose input position o·stride + offset lies in [0, in_size),
// as the half-open range [lo, hi). offset = k·dilation − padding for kernel tap k.
struct Range {
  std::int64_t lo, hi;
};
Range valid_outputs(std::int64_t offset, std::int64_t stride, std::int64_t in_size, std::int64_t out_size) {
  std::int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  std::int64_t hi = in_size - offset <= 0 ? 0 : (in_size - offset - 1) / stride + 1;
  hi = std::min(hi, out_size);
  lo = std::min(lo, hi);
  return {lo, hi};
}

bool is_pointwise(const Conv2dGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride == 1 && g.padding == 0;
}

// cols [C·kh·kw, H'·W']: row (c, ki, kj) holds x[c, h'·s − p + d·ki, w'·s − p + d·kj] (0 outside).
void im2col(const Conv2dGeometry& g, const float* x, float* cols) {
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width(), plane = oh_n * ow_n;
  for (std::int64_t c = 0; c < g.in_channels; ++c) {
    const float* x_c = x + c * g.height * g.width;
    for (std::int64_t ki = 0; ki < g.kernel_h; ++ki) {
      const Range rows = valid_outputs(ki * g.dilation - g.padding, g.stride, g.height, oh_n);
      for (std::int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const Range cs = valid_outputs(kj * g.dilation - g.padding, g.stride, g.width, ow_n);
        float* row = cols + ((c * g.kernel_h + ki) * g.kernel_w + kj) * plane;
        std::fill(row, row + rows.lo * ow_n, 0.0f);
        for (std::int64_t oh = rows.lo; oh < rows.hi; ++oh) {
          const float* x_row = x_c + (oh * g.stride + ki * g.dilation - g.padding) * g.width;
          float* out = row + oh * ow_n;
          for (std::int64_t ow = 0; ow < cs.lo; ++ow) out[ow] = 0.0f;
          if (g.stride == 1)  // a contiguous run: one memcpy instead of a strided gather
            std::copy(x_row + cs.lo + kj * g.dilation - g.padding, x_row + cs.hi + kj * g.dilation - g.padding,
                      out + cs.lo);
          else
            for (std::int64_t ow = cs.lo; ow < cs.hi; ++ow)
              out[ow] = x_row[ow * g.stride + kj * g.dilation - g.padding];
          for (std::int64_t ow = cs.hi; ow < ow_n; ++ow) out[ow] = 0.0f;
        }
        std::fill(row + rows.hi * ow_n, row + plane, 0.0f);
      }
    }
  }
}

// The adjoint of im2col: dx[c, ih, iw] = Σ of the cols entries that im2col read from there.
void col2im(const Conv2dGeometry& g, const float* cols, float* dx) {
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width(), plane = oh_n * ow_n;
  std::fill(dx, dx + g.in_channels * g.height * g.width, 0.0f);
  for (std::int64_t c = 0; c < g.in_channels; ++c) {
    float* dx_c = dx + c * g.height * g.width;
    for (std::int64_t ki = 0; ki < g.kernel_h; ++ki) {
      const Range rows = valid_outputs(ki * g.dilation - g.padding, g.stride, g.height, oh_n);
      for (std::int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const Range cs = valid_outputs(kj * g.dilation - g.padding, g.stride, g.width, ow_n);
        const float* row = cols + ((c * g.kernel_h + ki) * g.kernel_w + kj) * plane;
        for (std::int64_t oh = rows.lo; oh < rows.hi; ++oh) {
          float* dx_row = dx_c + (oh * g.stride + ki * g.dilation - g.padding) * g.width;
          const float* in = row + oh * ow_n;
          for (std::int64_t ow = cs.lo; ow < cs.hi; ++ow) dx_row[ow * g.stride + kj * g.dilation - g.padding] += in[ow];
        }
      }
    }
  }
}

// Threads for a loop over the examples: one example per thread at most, one thread for batch 1
// (OpenBLAS then threads the single product itself).
int example_threads(const Conv2dGeometry& g) {
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(g.batch, omp_get_max_threads())));
}

// One im2col buffer per thread, allocated before the parallel region so that an allocation failure
// throws to the caller instead of terminating inside OpenMP.
class ThreadColumns {
 public:
  ThreadColumns(const Conv2dGeometry& g, int threads)
      : m_size(is_pointwise(g) ? 0
                               : static_cast<std::size_t>(g.in_channels * g.kernel_h * g.kernel_w * g.out_height() *
                                                          g.out_width())),
        m_data(m_size * static_cast<std::size_t>(threads)) {}
  float* of_this_thread() { return m_data.data() + m_size * static_cast<std::size_t>(omp_get_thread_num()); }

 private:
  std::size_t m_size;
  std::vector<float> m_data;
};

}  // namespace

void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  if (g.batch == 0) return;
  if (detail::winograd_conv_applies(g)) return detail::conv2d_forward_winograd(g, x, w, bias, y);
  if (detail::direct_conv_applies(g)) return detail::conv2d_forward_direct(g, x, w, bias, y);
  const std::int64_t patch = g.in_channels * g.kernel_h * g.kernel_w;
  const std::int64_t plane = g.out_height() * g.out_width();
  const std::int64_t x_stride = g.in_channels * g.height * g.width, y_stride = g.out_channels * plane;
  const bool pointwise = is_pointwise(g);
  const int threads = example_threads(g);
  ThreadColumns columns(g, threads);
  const GemmArgs args{false, false, g.out_channels, plane, patch, 1.0f, 0.0f};
#pragma omp parallel num_threads(threads)
  {
    float* cols = columns.of_this_thread();
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < g.batch; ++n) {
      const float* x_n = x + n * x_stride;
      if (!pointwise) im2col(g, x_n, cols);
      float* y_n = y + n * y_stride;
      gemm(args, w, pointwise ? x_n : cols, y_n);  // y_n[O, H'W'] = w[O, patch] · cols[patch, H'W']
      if (bias)
        for (std::int64_t o = 0; o < g.out_channels; ++o) {
          float* y_o = y_n + o * plane;
          const float b = bias[o];
          for (std::int64_t q = 0; q < plane; ++q) y_o[q] += b;
        }
    }
  }
}

void conv2d_backward_data(const Conv2dGeometry& g, const float* gy, const float* w, float* dx) {
  const std::int64_t patch = g.in_channels * g.kernel_h * g.kernel_w;
  const std::int64_t plane = g.out_height() * g.out_width();
  const std::int64_t x_stride = g.in_channels * g.height * g.width, y_stride = g.out_channels * plane;
  const bool pointwise = is_pointwise(g);
  const int threads = example_threads(g);
  ThreadColumns columns(g, threads);
  const GemmArgs args{true, false, patch, plane, g.out_channels, 1.0f, 0.0f};
#pragma omp parallel num_threads(threads)
  {
    float* cols = columns.of_this_thread();
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < g.batch; ++n) {
      float* dx_n = dx + n * x_stride;
      // cols[patch, H'W'] = wᵀ[patch, O] · gy_n[O, H'W'], then folded back onto the image.
      gemm(args, w, gy + n * y_stride, pointwise ? dx_n : cols);
      if (!pointwise) col2im(g, cols, dx_n);
    }
  }
}

void conv2d_backward_filter(const Conv2dGeometry& g, const float* x, const float* gy, float* dw) {
  const std::int64_t patch = g.in_channels * g.kernel_h * g.kernel_w;
  const std::int64_t plane = g.out_height() * g.out_width();
  const std::int64_t x_stride = g.in_channels * g.height * g.width, y_stride = g.out_channels * plane;
  const auto dw_size = static_cast<std::size_t>(g.out_channels * patch);
  const bool pointwise = is_pointwise(g);
  const int threads = example_threads(g);
  ThreadColumns columns(g, threads);
  // One partial dw per thread; beta = 1 accumulates that thread's examples into it.
  std::vector<float> partials(static_cast<std::size_t>(threads) * dw_size, 0.0f);
  const GemmArgs args{false, true, g.out_channels, patch, plane, 1.0f, 1.0f};
#pragma omp parallel num_threads(threads)
  {
    float* cols = columns.of_this_thread();
    float* mine = partials.data() + static_cast<std::size_t>(omp_get_thread_num()) * dw_size;
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < g.batch; ++n) {
      const float* x_n = x + n * x_stride;
      if (!pointwise) im2col(g, x_n, cols);
      gemm(args, gy + n * y_stride, pointwise ? x_n : cols, mine);  // += gy_n · cols_nᵀ
    }
  }
  for (std::size_t i = 0; i < dw_size; ++i) {
    float total = 0.0f;
    for (int t = 0; t < threads; ++t) total += partials[static_cast<std::size_t>(t) * dw_size + i];
    dw[i] = total;
  }
}

void conv2d_backward_bias(const Conv2dGeometry& g, const float* gy, float* db) {
  const std::int64_t plane = g.out_height() * g.out_width();
#pragma omp parallel for schedule(static) if (g.batch * g.out_channels * plane > (1 << 15))
  for (std::int64_t o = 0; o < g.out_channels; ++o) {
    double total = 0.0;  // N·H'·W' terms: accumulate in double
    for (std::int64_t n = 0; n < g.batch; ++n) {
      const float* gy_no = gy + (n * g.out_channels + o) * plane;
      float row = 0.0f;
      for (std::int64_t q = 0; q < plane; ++q) row += gy_no[q];
      total += row;
    }
    db[o] = static_cast<float>(total);
  }
}

void conv2d_unfold(const Conv2dGeometry& g, const float* x, float* cols) {
  const std::int64_t x_stride = g.in_channels * g.height * g.width;
  const std::int64_t cols_stride = g.in_channels * g.kernel_h * g.kernel_w * g.out_height() * g.out_width();
#pragma omp parallel for schedule(static) if (g.batch > 1)
  for (std::int64_t n = 0; n < g.batch; ++n) im2col(g, x + n * x_stride, cols + n * cols_stride);
}

}  // namespace aegis::kernels::cpu
