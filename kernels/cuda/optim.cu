// CUDA backend of the fused optimizer updates (equations in kernels/optim.h): one thread per
// element in a grid-stride loop, 256 threads per block, on the per-thread default stream. Plain
// SGD (no momentum) has its own kernel so that it touches no state buffer.
#include "kernels/optim.h"
#include "runtime/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;

// Parameters travel by value as kernel arguments (a few dozen bytes of constant-bank space).
__global__ void sgd_plain_kernel(float lr, float wd, float* p, const float* grad, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    p[i] -= lr * (grad[i] + wd * p[i]);
}

__global__ void sgd_momentum_kernel(SgdUpdate u, float* p, const float* grad, float* buf, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x) {
    const float g = grad[i] + u.weight_decay * p[i];
    const float b = u.first_step ? g : u.momentum * buf[i] + g;
    buf[i] = b;
    p[i] -= u.lr * (u.nesterov ? g + u.momentum * b : b);
  }
}

__global__ void adam_kernel(AdamUpdate u, float* p, const float* grad, float* exp_avg, float* exp_avg_sq,
                            long long n) {
  const float shrink = u.decoupled ? 1.0f - u.lr * u.weight_decay : 1.0f;
  const float l2 = u.decoupled ? 0.0f : u.weight_decay;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x) {
    const float pv = p[i];
    const float g = grad[i] + l2 * pv;
    const float m = u.beta1 * exp_avg[i] + (1.0f - u.beta1) * g;
    const float v = u.beta2 * exp_avg_sq[i] + (1.0f - u.beta2) * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    // sqrtf and IEEE division (no fast-math) keep this within a few ulp of the CPU kernel.
    p[i] = pv * shrink - u.step_size * m / (sqrtf(v) / u.bias_correction2_sqrt + u.eps);
  }
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
