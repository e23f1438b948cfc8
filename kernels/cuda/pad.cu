#include "core/cuda/check.h"
#include "kernels/pad.h"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;

#define AEGIS_GRID_STRIDE(i, n) \
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < (n); i += 1LL * gridDim.x * blockDim.x)

// Pad2dGeometry by value, with the output size precomputed.
struct Dims {
  long long planes, height, width, top, left, out_h, out_w;
};
Dims dims_of(const Pad2dGeometry& g) {
  return {g.planes, g.height, g.width, g.top, g.left, g.out_height(), g.out_width()};
}

__global__ void pad_forward_kernel(Dims d, const float* x, float value, float* y) {
  AEGIS_GRID_STRIDE(i, d.planes * d.out_h * d.out_w) {
    const long long ow = i % d.out_w, oh = (i / d.out_w) % d.out_h, plane = i / (d.out_w * d.out_h);
    const long long h = oh - d.top, w = ow - d.left;
    const bool inside = h >= 0 && h < d.height && w >= 0 && w < d.width;
    y[i] = inside ? x[(plane * d.height + h) * d.width + w] : value;
  }
}

__global__ void pad_backward_kernel(Dims d, const float* gy, float* dx) {
  AEGIS_GRID_STRIDE(i, d.planes * d.height * d.width) {
    const long long w = i % d.width, h = (i / d.width) % d.height, plane = i / (d.width * d.height);
    dx[i] = gy[(plane * d.out_h + h + d.top) * d.out_w + w + d.left];
  }
}

}  // namespace

void pad2d_forward(const Pad2dGeometry& g, const float* d_x, float value, float* d_y) {
  const Dims d = dims_of(g);
  const long long n = d.planes * d.out_h * d.out_w;
  if (n <= 0) return;
  pad_forward_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(d, d_x, value, d_y);
  CUDA_CHECK_LAUNCH();
}

void pad2d_backward(const Pad2dGeometry& g, const float* d_gy, float* d_dx) {
  const Dims d = dims_of(g);
  const long long n = d.planes * d.height * d.width;
  if (n <= 0) return;
  pad_backward_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(d, d_gy, d_dx);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
