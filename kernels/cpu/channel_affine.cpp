#include "kernels/channel_affine.h"

namespace aegis::kernels::cpu {

void channel_affine_forward(std::int64_t n, std::int64_t c, std::int64_t s, const float* x, const float* scale,
                            const float* shift, float* y) {
#pragma omp parallel for schedule(static) if (n * c * s > (1 << 16))
  for (std::int64_t row = 0; row < n * c; ++row) {
    const float a = scale[row % c], b = shift[row % c];
    const float* xr = x + row * s;
    float* yr = y + row * s;
    for (std::int64_t i = 0; i < s; ++i) {
      const float product = xr[i] * a;  // rounded before the add, as on the GPU
      yr[i] = product + b;
    }
  }
}

void channel_affine_backward(std::int64_t n, std::int64_t c, std::int64_t s, const float* gy, const float* scale,
                             float* dx) {
#pragma omp parallel for schedule(static) if (n * c * s > (1 << 16))
  for (std::int64_t row = 0; row < n * c; ++row) {
    const float a = scale[row % c];
    const float* gr = gy + row * s;
    float* dr = dx + row * s;
    for (std::int64_t i = 0; i < s; ++i) dr[i] = gr[i] * a;
  }
}

}  // namespace aegis::kernels::cpu
