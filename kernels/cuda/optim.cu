// CUDA backend of the fused optimizer updates (equations in kernels/optim.h, per-element formulas
// shared with the CPU in kernels/optim_math.h): one thread per element in a grid-stride loop,
// 256 threads per block, on the per-thread default stream. Plain SGD (no momentum) has its own
// kernel so that it touches no state buffer.
#include "kernels/optim.h"
#include "kernels/optim_math.h"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;

// Parameters travel by value as kernel arguments (a few dozen bytes of constant-bank space).
__global__ void sgd_plain_kernel(float lr, float wd, float* p, const float* grad, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    p[i] = sgd_plain_update(lr, wd, p[i], grad[i]);
}

__global__ void sgd_momentum_kernel(SgdUpdate u, float* p, const float* grad, float* buf, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    sgd_momentum_update(u, grad[i], p[i], buf[i]);
}

__global__ void adam_kernel(AdamUpdate u, float* p, const float* grad, float* exp_avg, float* exp_avg_sq, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    adam_update(u, grad[i], p[i], exp_avg[i], exp_avg_sq[i]);
}

unsigned grid(long long n) {
  return cuda_backend::grid_for(n, kBlock);
}

}  // namespace

void sgd_step(const SgdUpdate& u, float* d_param, const float* d_grad, float* d_momentum_buf, std::int64_t n) {
  if (n <= 0) return;
  if (u.momentum == 0.0f) {
    sgd_plain_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(u.lr, u.weight_decay, d_param, d_grad, n);
  } else {
    sgd_momentum_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(u, d_param, d_grad, d_momentum_buf, n);
  }
  CUDA_CHECK_LAUNCH();
}

void adam_step(const AdamUpdate& u, float* d_param, const float* d_grad, float* d_exp_avg, float* d_exp_avg_sq,
               std::int64_t n) {
  if (n <= 0) return;
  adam_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(u, d_param, d_grad, d_exp_avg, d_exp_avg_sq, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
