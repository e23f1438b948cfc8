#include "kernels/pad.h"

#include <algorithm>

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 14;  // output elements below which one thread is faster
}  // namespace

void pad2d_forward(const Pad2dGeometry& g, const float* x, float value, float* y) {
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width();
  const std::int64_t in_plane = g.height * g.width, out_plane = oh_n * ow_n;
#pragma omp parallel for schedule(static) if (g.planes * out_plane > kParallelMin)
  for (std::int64_t pl = 0; pl < g.planes; ++pl) {
    float* y_p = y + pl * out_plane;
    const float* x_p = x + pl * in_plane;
    std::fill(y_p, y_p + g.top * ow_n, value);
    for (std::int64_t h = 0; h < g.height; ++h) {
      float* row = y_p + (g.top + h) * ow_n;
      std::fill(row, row + g.left, value);
      std::copy(x_p + h * g.width, x_p + (h + 1) * g.width, row + g.left);
      std::fill(row + g.left + g.width, row + ow_n, value);
    }
    std::fill(y_p + (g.top + g.height) * ow_n, y_p + out_plane, value);
  }
}

void pad2d_backward(const Pad2dGeometry& g, const float* gy, float* dx) {
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width();
  const std::int64_t in_plane = g.height * g.width, out_plane = oh_n * ow_n;
#pragma omp parallel for schedule(static) if (g.planes * in_plane > kParallelMin)
  for (std::int64_t pl = 0; pl < g.planes; ++pl)
    for (std::int64_t h = 0; h < g.height; ++h) {
      const float* row = gy + pl * out_plane + (g.top + h) * ow_n + g.left;
      std::copy(row, row + g.width, dx + pl * in_plane + h * g.width);
    }
}

}  // namespace aegis::kernels::cpu
