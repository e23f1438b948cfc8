#include "core/cuda/check.h"
#include "kernels/channel_affine.h"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void forward_kernel(long long total, long long c, long long s, const float* x, const float* scale,
                               const float* shift, float* y) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < total; i += 1LL * gridDim.x * blockDim.x) {
    const long long ch = (i / s) % c;
    y[i] = __fadd_rn(__fmul_rn(x[i], scale[ch]), shift[ch]);  // no FMA: the CPU's rounding
  }
}

__global__ void backward_kernel(long long total, long long c, long long s, const float* gy, const float* scale,
                                float* dx) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < total; i += 1LL * gridDim.x * blockDim.x)
    dx[i] = __fmul_rn(gy[i], scale[(i / s) % c]);
}

}  // namespace

void channel_affine_forward(std::int64_t n, std::int64_t c, std::int64_t s, const float* d_x, const float* d_scale,
                            const float* d_shift, float* d_y) {
  const long long total = n * c * s;
  if (total <= 0) return;
  forward_kernel<<<cuda_backend::grid_for(total, kBlock), kBlock, 0, cuda_backend::stream()>>>(total, c, s, d_x, d_scale,
                                                                                              d_shift, d_y);
  CUDA_CHECK_LAUNCH();
}

void channel_affine_backward(std::int64_t n, std::int64_t c, std::int64_t s, const float* d_gy, const float* d_scale,
                             float* d_dx) {
  const long long total = n * c * s;
  if (total <= 0) return;
  backward_kernel<<<cuda_backend::grid_for(total, kBlock), kBlock, 0, cuda_backend::stream()>>>(total, c, s, d_gy,
                                                                                               d_scale, d_dx);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
