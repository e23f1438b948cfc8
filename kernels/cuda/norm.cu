#include <algorithm>
#include <climits>

#include "core/cuda/stream_scratch.h"
#include "kernels/norm.h"
#include "core/cuda_backend.h"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

using cuda_backend::StreamScratch;

constexpr int kBlock = 256;  // a multiple of 32: block_sum relies on whole warps

// Sum of v over the block, returned to every thread. `scratch` holds one float per warp. The
// leading barrier lets the block call this repeatedly with the same scratch.
__device__ float block_sum(float v, float* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = lane < warps ? scratch[lane] : 0.0f;
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Block b normalizes group (n, g) = (b / groups, b % groups): m contiguous elements from b·m.
// Two passes over the group (mean, then squared deviations) avoid the cancellation of
// E[x²] − E[x]²; the second and third reads mostly hit L2.
__global__ void group_norm_forward_kernel(const float* x, const float* gamma, const float* beta, float* y, float* xhat,
                                          float* rstd, long long per_group, long long spatial, long long groups,
                                          float eps) {
  __shared__ float scratch[32];
  const long long b = blockIdx.x;
  const long long m = per_group * spatial;
  const float* xb = x + b * m;
  float partial = 0.0f;
  for (long long i = threadIdx.x; i < m; i += blockDim.x) partial += xb[i];
  const float mean = block_sum(partial, scratch) / static_cast<float>(m);
  partial = 0.0f;
  for (long long i = threadIdx.x; i < m; i += blockDim.x) {
    const float d = xb[i] - mean;
    partial += d * d;
  }
  const float r = rsqrtf(block_sum(partial, scratch) / static_cast<float>(m) + eps);
  if (threadIdx.x == 0) rstd[b] = r;
  const long long c0 = (b % groups) * per_group;
  for (long long i = threadIdx.x; i < m; i += blockDim.x) {
    const float h = (xb[i] - mean) * r;
    if (xhat) xhat[b * m + i] = h;
    const long long ch = c0 + i / spatial;
    y[b * m + i] = gamma ? fmaf(gamma[ch], h, beta[ch]) : h;
  }
}

// dx_j = r·(ĝ_j − mean(ĝ) − x̂_j·mean(ĝ·x̂)) per group, ĝ = g·γ[c]; the formula and its source
// are written out beside the CPU version (kernels/cpu/norm.cpp).
__global__ void group_norm_dx_kernel(const float* gy, const float* xhat, const float* rstd, const float* gamma,
                                     float* dx, long long per_group, long long spatial, long long groups) {
  __shared__ float scratch[32];
  const long long b = blockIdx.x;
  const long long m = per_group * spatial;
  const long long c0 = (b % groups) * per_group;
  const float* gb = gy + b * m;
  const float* hb = xhat + b * m;
  float partial_g = 0.0f, partial_gh = 0.0f;
  for (long long i = threadIdx.x; i < m; i += blockDim.x) {
    const float g = gamma ? gb[i] * gamma[c0 + i / spatial] : gb[i];
    partial_g += g;
    partial_gh += g * hb[i];
  }
  const float inv_m = 1.0f / static_cast<float>(m);
  const float mean_g = block_sum(partial_g, scratch) * inv_m;
  const float mean_gh = block_sum(partial_gh, scratch) * inv_m;
  const float r = rstd[b];
  for (long long i = threadIdx.x; i < m; i += blockDim.x) {
    const float g = gamma ? gb[i] * gamma[c0 + i / spatial] : gb[i];
    dx[b * m + i] = r * (g - mean_g - hb[i] * mean_gh);
  }
}

// Block (ch, s) reduces channel ch over slice s of the batch (examples s·per … s·per + per − 1)
// and the spatial positions: runs of `spatial` contiguous elements, c·spatial apart. Its two sums
// go to partial[(s·c + ch)·2 + {0, 1}]; affine_grad_finish adds the slices in order, so the result
// does not depend on scheduling. One block per channel alone would leave most of an H100's 132
// multiprocessors idle for ResNet-20's 16–64 channels.
__global__ void group_norm_affine_partial_kernel(const float* gy, const float* xhat, float* partial, long long n,
                                                 long long c, long long spatial, long long per) {
  __shared__ float scratch[32];
  const long long ch = blockIdx.x, s = blockIdx.y;
  const long long first = s * per, last = first + per < n ? first + per : n;
  const long long total = (last > first ? last - first : 0) * spatial;
  float partial_g = 0.0f, partial_gh = 0.0f;
  for (long long k = threadIdx.x; k < total; k += blockDim.x) {
    const long long i = ((first + k / spatial) * c + ch) * spatial + k % spatial;
    partial_g += gy[i];
    partial_gh += gy[i] * xhat[i];
  }
  const float sum_g = block_sum(partial_g, scratch);
  const float sum_gh = block_sum(partial_gh, scratch);
  if (threadIdx.x == 0) {
    partial[(s * c + ch) * 2] = sum_g;
    partial[(s * c + ch) * 2 + 1] = sum_gh;
  }
}

__global__ void group_norm_affine_finish_kernel(const float* partial, float* dgamma, float* dbeta, long long c,
                                                long long slices) {
  for (long long ch = blockIdx.x * 1LL * blockDim.x + threadIdx.x; ch < c; ch += 1LL * gridDim.x * blockDim.x) {
    float sum_g = 0.0f, sum_gh = 0.0f;
    for (long long s = 0; s < slices; ++s) {
      sum_g += partial[(s * c + ch) * 2];
      sum_gh += partial[(s * c + ch) * 2 + 1];
    }
    if (dgamma) dgamma[ch] = sum_gh;
    if (dbeta) dbeta[ch] = sum_g;
  }
}

}  // namespace

void group_norm_forward(const float* d_x, const float* d_gamma, const float* d_beta, float* d_y, float* d_xhat,
                        float* d_rstd, std::int64_t n, std::int64_t c, std::int64_t spatial, std::int64_t groups,
                        float eps) {
  const std::int64_t per_group = c / groups;
  if (n == 0 || per_group * spatial == 0) return;
  AEGIS_CHECK_AS(ShapeError, n * groups <= INT_MAX, "group_norm on CUDA: " << n * groups << " groups exceed the grid");
  group_norm_forward_kernel<<<static_cast<unsigned>(n * groups), kBlock, 0, cuda_backend::stream()>>>(
      d_x, d_gamma, d_beta, d_y, d_xhat, d_rstd, per_group, spatial, groups, eps);
  CUDA_CHECK_LAUNCH();
}

void group_norm_backward(const float* d_gy, const float* d_xhat, const float* d_rstd, const float* d_gamma, float* d_dx,
                         float* d_dgamma, float* d_dbeta, std::int64_t n, std::int64_t c, std::int64_t spatial,
                         std::int64_t groups) {
  const std::int64_t per_group = c / groups;
  if (d_dx && n > 0 && per_group * spatial > 0) {
    AEGIS_CHECK_AS(ShapeError, n * groups <= INT_MAX, "group_norm on CUDA: " << n * groups << " groups exceed the grid");
    group_norm_dx_kernel<<<static_cast<unsigned>(n * groups), kBlock, 0, cuda_backend::stream()>>>(
        d_gy, d_xhat, d_rstd, d_gamma, d_dx, per_group, spatial, groups);
    CUDA_CHECK_LAUNCH();
  }
  if ((d_dgamma || d_dbeta) && c > 0) {
    // About 512 blocks in all (several per multiprocessor), at most one slice per example; every
    // channel gets a block even when n·spatial = 0, so that dγ and dβ come out as zeros.
    const long long slices = std::max<long long>(1, std::min<long long>(n, 512 / std::max<long long>(c, 1)));
    const long long per = n > 0 ? (n + slices - 1) / slices : 0;
    AEGIS_CHECK_AS(ShapeError, c <= INT_MAX, "group_norm on CUDA: " << c << " channels exceed the grid");
    const StreamScratch partial(sizeof(float) * 2 * static_cast<std::size_t>(slices * c));
    float* d_partial = static_cast<float*>(partial.get());
    group_norm_affine_partial_kernel<<<dim3(static_cast<unsigned>(c), static_cast<unsigned>(slices)), kBlock, 0,
                                       cuda_backend::stream()>>>(d_gy, d_xhat, d_partial, n, c, spatial, per);
    CUDA_CHECK_LAUNCH();
    group_norm_affine_finish_kernel<<<cuda_backend::grid_for(c, kBlock), kBlock, 0, cuda_backend::stream()>>>(
        d_partial, d_dgamma, d_dbeta, c, slices);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace aegis::kernels::cuda
