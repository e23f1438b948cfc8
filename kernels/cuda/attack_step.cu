#include "kernels/attack_step.h"
#include "kernels/cuda/block_reduce.cuh"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

__device__ float sign_of(float v) {
  return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
}

// x ← clip[lo, hi](x + α·sign(dir)) for one element, lo/hi the intersection of the ε-interval
// around x0 with [0, 1].
__device__ float linf_element(float x, float x0, float dir, double eps, double alpha) {
  const double lo = fmax(0.0, static_cast<double>(x0) - eps), hi = fmin(1.0, static_cast<double>(x0) + eps);
  const double v = static_cast<double>(x) + alpha * sign_of(dir);
  return round_into(fmin(fmax(v, lo), hi), lo, hi);
}

// The L2 step of the block's example along dir/‖dir‖₂ (dir already final in memory), with the
// projection onto l2_target_radius and the box clip. All threads of the block call it.
__device__ void l2_row(float* x, const float* x0, const float* dir, double eps, double alpha, long long d,
                       double* scratch) {
  double dir_sq = 0.0;
  for (long long j = threadIdx.x; j < d; j += blockDim.x) dir_sq += static_cast<double>(dir[j]) * dir[j];
  dir_sq = block_sum(dir_sq, scratch);
  const double scale = dir_sq > 0.0 ? alpha / sqrt(dir_sq) : 0.0;
  double delta_sq = 0.0;
  for (long long j = threadIdx.x; j < d; j += blockDim.x) {
    const double delta = static_cast<double>(x[j]) + scale * dir[j] - x0[j];
    delta_sq += delta * delta;
  }
  const double norm = sqrt(block_sum(delta_sq, scratch));
  const double radius = l2_target_radius(eps, d);
  const double factor = norm > radius ? radius / norm : 1.0;
  // Each thread rewrites only the elements it read above, so no barrier is needed before it.
  for (long long j = threadIdx.x; j < d; j += blockDim.x) {
    const double delta = (static_cast<double>(x[j]) + scale * dir[j] - x0[j]) * factor;
    x[j] = static_cast<float>(fmin(fmax(x0[j] + delta, 0.0), 1.0));
  }
}

__global__ void linf_sign_step_kernel(float* x, const float* x0, const float* grad, const float* eps,
                                      const float* alpha, long long n, long long d) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n * d; i += 1LL * gridDim.x * blockDim.x) {
    const long long row = i / d;
    x[i] = linf_element(x[i], x0[i], grad[i], eps[row], alpha[row]);
  }
}

__global__ void l2_step_kernel(float* x, const float* x0, const float* grad, const float* eps, const float* alpha,
                               long long d) {
  __shared__ double scratch[kWarps];
  const long long row = blockIdx.x;
  l2_row(x + row * d, x0 + row * d, grad + row * d, eps[row], alpha[row], d, scratch);
}

// MI-FGSM (Dong et al. 2018, Alg. 1): g ← μ·g + ∇/‖∇‖₁ for the block's example, then the step.
__global__ void momentum_step_kernel(AttackNorm norm, float decay, float* x, const float* x0, const float* grad,
                                     float* momentum, const float* eps, const float* alpha, long long d) {
  __shared__ double scratch[kWarps];
  const long long row = blockIdx.x;
  float* xr = x + row * d;
  const float* x0r = x0 + row * d;
  const float* gr = grad + row * d;
  float* mr = momentum + row * d;
  double l1 = 0.0;
  for (long long j = threadIdx.x; j < d; j += blockDim.x) l1 += fabs(static_cast<double>(gr[j]));
  l1 = block_sum(l1, scratch);
  const double inv_l1 = l1 > 0.0 ? 1.0 / l1 : 0.0;
  for (long long j = threadIdx.x; j < d; j += blockDim.x) {
    const float m = static_cast<float>(decay * static_cast<double>(mr[j]) + gr[j] * inv_l1);
    mr[j] = m;
    if (norm == AttackNorm::Linf) xr[j] = linf_element(xr[j], x0r[j], m, eps[row], alpha[row]);
  }
  // l2_row walks the elements with the same block-stride mapping, so every thread reads back
  // only the accumulator entries it wrote itself.
  if (norm == AttackNorm::L2) l2_row(xr, x0r, mr, eps[row], alpha[row], d, scratch);
}

__global__ void linf_start_kernel(float* x, const float* x0, const float* eps, const int* example_ids, long long n,
                                  long long d, philox::Key key) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n * d; i += 1LL * gridDim.x * blockDim.x) {
    const long long row = i / d, j = i - row * d;
    const double e = eps[row];
    const double u = philox::uniform(key, static_cast<unsigned long long>(example_ids[row]) * d + j);
    const double lo = fmax(0.0, x0[i] - e), hi = fmin(1.0, x0[i] + e);
    x[i] = round_into(fmin(fmax(x0[i] + e * (2.0 * u - 1.0), lo), hi), lo, hi);
  }
}

// Direction z/‖z‖ with z standard normal, radius ε·U^{1/d}; z is parked in x between the passes.
__global__ void l2_start_kernel(float* x, const float* x0, const float* eps, const int* example_ids, long long d,
                                philox::Key key) {
  __shared__ double scratch[kWarps];
  const long long row = blockIdx.x;
  float* xr = x + row * d;
  const float* x0r = x0 + row * d;
  const unsigned long long id = static_cast<unsigned long long>(example_ids[row]);
  double z_sq = 0.0;
  for (long long j = threadIdx.x; j < d; j += blockDim.x) {
    const float z = philox::normal(key, id * d + j);
    xr[j] = z;
    z_sq += static_cast<double>(z) * z;
  }
  z_sq = block_sum(z_sq, scratch);
  const double u = philox::uniform(key, kRadiusIndexBase + id);
  const double radius = l2_target_radius(eps[row], d) * pow(u, 1.0 / static_cast<double>(d));
  const double scale = z_sq > 0.0 ? radius / sqrt(z_sq) : 0.0;
  for (long long j = threadIdx.x; j < d; j += blockDim.x)
    xr[j] = static_cast<float>(fmin(fmax(x0r[j] + xr[j] * scale, 0.0), 1.0));
}

__global__ void copy_rows_kernel(const float* src, const int* src_rows, float* dst, const int* dst_rows,
                                 long long count, long long d) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < count * d; i += 1LL * gridDim.x * blockDim.x) {
    const long long j = i / d, k = i - j * d;
    dst[dst_rows[j] * d + k] = src[src_rows[j] * d + k];
  }
}

__global__ void perturbation_norms_kernel(AttackNorm norm, const float* x, const float* x0, float* out, long long d) {
  __shared__ double scratch[kWarps];
  const long long row = blockIdx.x;
  double acc = 0.0;
  for (long long j = threadIdx.x; j < d; j += blockDim.x) {
    const double diff = static_cast<double>(x[row * d + j]) - x0[row * d + j];
    acc = norm == AttackNorm::Linf ? fmax(acc, fabs(diff)) : acc + diff * diff;
  }
  if (norm == AttackNorm::Linf) {
    acc = block_max(acc, scratch);
  } else {
    acc = sqrt(block_sum(acc, scratch));
  }
  if (threadIdx.x == 0) out[row] = static_cast<float>(acc);
}

__global__ void free_input_kernel(const float* x, const float* delta, float* x_adv, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    x_adv[i] = free_input_element(x[i], delta[i]);
}

__global__ void free_update_kernel(float* delta, const float* grad, float eps, long long n) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    delta[i] = free_delta_element(delta[i], grad[i], eps);
}

}  // namespace

void free_input(const float* d_x, const float* d_delta, float* d_x_adv, std::int64_t n) {
  if (n <= 0) return;
  free_input_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(d_x, d_delta, d_x_adv, n);
  CUDA_CHECK_LAUNCH();
}

void free_update(float* d_delta, const float* d_grad, float eps, std::int64_t n) {
  if (n <= 0) return;
  free_update_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(d_delta, d_grad, eps, n);
  CUDA_CHECK_LAUNCH();
}

void attack_step(const AttackStepArgs& a, float* d_x, const float* d_x0, const float* d_grad, float* d_momentum,
                 const float* d_eps, const float* d_alpha) {
  if (a.n <= 0 || a.d <= 0) return;
  const cudaStream_t s = cuda_backend::stream();
  if (a.momentum) {
    momentum_step_kernel<<<static_cast<unsigned>(a.n), kBlock, 0, s>>>(a.norm, a.decay, d_x, d_x0, d_grad, d_momentum,
                                                                       d_eps, d_alpha, a.d);
  } else if (a.norm == AttackNorm::Linf) {
    linf_sign_step_kernel<<<cuda_backend::grid_for(a.n * a.d, kBlock), kBlock, 0, s>>>(d_x, d_x0, d_grad, d_eps,
                                                                                       d_alpha, a.n, a.d);
  } else {
    l2_step_kernel<<<static_cast<unsigned>(a.n), kBlock, 0, s>>>(d_x, d_x0, d_grad, d_eps, d_alpha, a.d);
  }
  CUDA_CHECK_LAUNCH();
}

void attack_random_start(AttackNorm norm, float* d_x, const float* d_x0, const float* d_eps,
                         const std::int32_t* d_example_ids, std::int64_t n, std::int64_t d, const philox::Key& key) {
  if (n <= 0 || d <= 0) return;
  const cudaStream_t s = cuda_backend::stream();
  if (norm == AttackNorm::Linf) {
    linf_start_kernel<<<cuda_backend::grid_for(n * d, kBlock), kBlock, 0, s>>>(d_x, d_x0, d_eps, d_example_ids, n, d,
                                                                               key);
  } else {
    l2_start_kernel<<<static_cast<unsigned>(n), kBlock, 0, s>>>(d_x, d_x0, d_eps, d_example_ids, d, key);
  }
  CUDA_CHECK_LAUNCH();
}

void copy_rows(const float* d_src, const std::int32_t* d_src_rows, float* d_dst, const std::int32_t* d_dst_rows,
               std::int64_t count, std::int64_t d) {
  if (count <= 0 || d <= 0) return;
  copy_rows_kernel<<<cuda_backend::grid_for(count * d, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      d_src, d_src_rows, d_dst, d_dst_rows, count, d);
  CUDA_CHECK_LAUNCH();
}

void perturbation_norms(AttackNorm norm, const float* d_x, const float* d_x0, float* d_out, std::int64_t n,
                        std::int64_t d) {
  if (n <= 0) return;
  perturbation_norms_kernel<<<static_cast<unsigned>(n), kBlock, 0, cuda_backend::stream()>>>(norm, d_x, d_x0, d_out, d);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
