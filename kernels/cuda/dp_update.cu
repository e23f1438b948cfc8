// CUDA backend of the fused DP noise-and-update (kernels/dp_update.h): one thread per element in
// a grid-stride loop, 256 threads per block, on the per-thread default stream. Each thread draws
// its Philox normal from (key, offset + i) — never from its thread id — so the noise equals the
// CPU backend's whatever the launch shape.
#include "kernels/dp_update.h"
#include "kernels/optim_math.h"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void dp_noisy_gradient_kernel(DpNoise d, const float* sum, const float* canary, float* out, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    out[i] = dp_noisy_gradient(d, sum[i], canary ? canary[i] : 0.0f, static_cast<unsigned long long>(i));
}

__global__ void dp_sgd_kernel(DpNoise d, SgdUpdate u, float* p, const float* sum, const float* canary, float* buf,
                              float* noisy_out, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x) {
    const float g = dp_noisy_gradient(d, sum[i], canary ? canary[i] : 0.0f, static_cast<unsigned long long>(i));
    if (noisy_out) noisy_out[i] = g;
    sgd_update(u, g, p[i], buf ? buf + i : nullptr);
  }
}

__global__ void dp_adam_kernel(DpNoise d, AdamUpdate u, float* p, const float* sum, const float* canary, float* exp_avg,
                               float* exp_avg_sq, float* noisy_out, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x) {
    const float g = dp_noisy_gradient(d, sum[i], canary ? canary[i] : 0.0f, static_cast<unsigned long long>(i));
    if (noisy_out) noisy_out[i] = g;
    adam_update(u, g, p[i], exp_avg[i], exp_avg_sq[i]);
  }
}

}  // namespace

void dp_noisy_gradient_fill(const DpNoise& d, const float* d_clipped_sum, const float* d_canary, float* d_out,
                            std::int64_t n) {
  if (n <= 0) return;
  dp_noisy_gradient_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      d, d_clipped_sum, d_canary, d_out, n);
  CUDA_CHECK_LAUNCH();
}

void dp_sgd_step(const DpNoise& d, const SgdUpdate& u, float* d_param, const float* d_clipped_sum,
                 const float* d_canary, float* d_momentum_buf, float* d_noisy_grad_out, std::int64_t n) {
  if (n <= 0) return;
  dp_sgd_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      d, u, d_param, d_clipped_sum, d_canary, d_momentum_buf, d_noisy_grad_out, n);
  CUDA_CHECK_LAUNCH();
}

void dp_adam_step(const DpNoise& d, const AdamUpdate& u, float* d_param, const float* d_clipped_sum,
                  const float* d_canary, float* d_exp_avg, float* d_exp_avg_sq, float* d_noisy_grad_out,
                  std::int64_t n) {
  if (n <= 0) return;
  dp_adam_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      d, u, d_param, d_clipped_sum, d_canary, d_exp_avg, d_exp_avg_sq, d_noisy_grad_out, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
