#include "core/cuda/check.h"
#include "kernels/cuda/warp_reduce.cuh"
#include "kernels/softmax.h"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / 32;  // one warp per row

// The row of warp w is blockIdx.x·kRowsPerBlock + w. A warp past the last row returns as a whole,
// so the full-mask shuffles below always see 32 active lanes.
__device__ long long warp_row() {
  return blockIdx.x * 1LL * kRowsPerBlock + (threadIdx.x >> 5);
}

// The row maximum m (fmaxf drops NaN) and log Σ_j exp(x_j − m), both returned to every lane.
__device__ void row_max_and_log_sum(const float* x, long long cols, int lane, float& m, float& lse) {
  m = -INFINITY;
  for (long long j = lane; j < cols; j += 32) m = fmaxf(m, x[j]);
  m = warp_max(m);
  float s = 0.0f;
  for (long long j = lane; j < cols; j += 32) s += expf(x[j] - m);
  lse = logf(warp_sum(s));
}

__device__ float log_floor(float p) {
  return logf(fmaxf(p, kProbabilityFloor));
}

__global__ void softmax_forward_kernel(const float* x, float* y, long long rows, long long cols) {
  const long long row = warp_row();
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float m, lse;
  row_max_and_log_sum(x + row * cols, cols, lane, m, lse);
  for (long long j = lane; j < cols; j += 32) y[row * cols + j] = expf(x[row * cols + j] - m - lse);
}

__global__ void log_softmax_forward_kernel(const float* x, float* y, long long rows, long long cols) {
  const long long row = warp_row();
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float m, lse;
  row_max_and_log_sum(x + row * cols, cols, lane, m, lse);
  for (long long j = lane; j < cols; j += 32) y[row * cols + j] = (x[row * cols + j] - m) - lse;
}

// dx = y ⊙ (g − Σ g·y) for softmax (log_output false); dx = g − exp(y)·Σ g for log-softmax.
__global__ void softmax_backward_kernel(const float* y, const float* gy, float* dx, bool log_output, long long rows,
                                        long long cols) {
  const long long row = warp_row();
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const float* yr = y + row * cols;
  const float* gr = gy + row * cols;
  float s = 0.0f;
  for (long long j = lane; j < cols; j += 32) s += log_output ? gr[j] : gr[j] * yr[j];
  s = warp_sum(s);
  for (long long j = lane; j < cols; j += 32)
    dx[row * cols + j] = log_output ? gr[j] - expf(yr[j]) * s : yr[j] * (gr[j] - s);
}

// out_r = Σ p (log p − logq) (KL, logq non-null) or −Σ p log p (entropy, logq null).
__global__ void divergence_forward_kernel(const float* p, const float* logq, float* out, long long rows,
                                          long long cols) {
  const long long row = warp_row();
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  float s = 0.0f;
  for (long long j = row * cols + lane; j < (row + 1) * cols; j += 32)
    s += logq ? p[j] * (log_floor(p[j]) - logq[j]) : -p[j] * log_floor(p[j]);
  s = warp_sum(s);
  if (lane == 0) out[row] = s;
}

// KL (logq non-null): dp = g (log p + 1 − logq), dlogq = −g p; entropy: dp = −g (log p + 1). One thread
// per element.
__global__ void divergence_backward_kernel(const float* p, const float* logq, const float* g, float* dp, float* dlogq,
                                           long long rows, long long cols) {
  const long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const float gi = g[i / cols];
  if (logq) {
    if (dp) dp[i] = gi * (log_floor(p[i]) + 1.0f - logq[i]);
    if (dlogq) dlogq[i] = -gi * p[i];
  } else {
    dp[i] = -gi * (log_floor(p[i]) + 1.0f);
  }
}

__global__ void group_sum_kernel(const float* x, float* out, float scale, long long groups, long long group,
                                 long long cols) {
  const long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x;
  if (i >= groups * cols) return;
  const long long b = i / cols, j = i % cols;
  float s = 0.0f;
  for (long long k = 0; k < group; ++k) s += x[(b * group + k) * cols + j];
  out[i] = s * scale;
}

__global__ void repeat_kernel(const float* x, float* out, float scale, long long groups, long long group,
                              long long cols) {
  const long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x;
  if (i >= groups * group * cols) return;
  const long long r = i / cols, j = i % cols;
  out[i] = x[(r / group) * cols + j] * scale;
}

unsigned row_blocks(std::int64_t rows) {
  return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
}
unsigned element_blocks(std::int64_t n) {
  return static_cast<unsigned>((n + kBlock - 1) / kBlock);
}

}  // namespace

void softmax_forward(const float* d_x, float* d_y, std::int64_t rows, std::int64_t cols) {
  if (rows == 0 || cols == 0) return;
  softmax_forward_kernel<<<row_blocks(rows), kBlock, 0, cuda_backend::stream()>>>(d_x, d_y, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void softmax_backward(const float* d_y, const float* d_gy, float* d_dx, std::int64_t rows, std::int64_t cols) {
  if (rows == 0 || cols == 0) return;
  softmax_backward_kernel<<<row_blocks(rows), kBlock, 0, cuda_backend::stream()>>>(d_y, d_gy, d_dx, false, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void log_softmax_forward(const float* d_x, float* d_y, std::int64_t rows, std::int64_t cols) {
  if (rows == 0 || cols == 0) return;
  log_softmax_forward_kernel<<<row_blocks(rows), kBlock, 0, cuda_backend::stream()>>>(d_x, d_y, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void log_softmax_backward(const float* d_y, const float* d_gy, float* d_dx, std::int64_t rows, std::int64_t cols) {
  if (rows == 0 || cols == 0) return;
  softmax_backward_kernel<<<row_blocks(rows), kBlock, 0, cuda_backend::stream()>>>(d_y, d_gy, d_dx, true, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void kl_div_forward(const float* d_p, const float* d_logq, float* d_out, std::int64_t rows, std::int64_t cols) {
  if (rows == 0) return;
  divergence_forward_kernel<<<row_blocks(rows), kBlock, 0, cuda_backend::stream()>>>(d_p, d_logq, d_out, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void kl_div_backward(const float* d_p, const float* d_logq, const float* d_g, float* d_dp, float* d_dlogq,
                     std::int64_t rows, std::int64_t cols) {
  if (rows * cols == 0 || (!d_dp && !d_dlogq)) return;
  divergence_backward_kernel<<<element_blocks(rows * cols), kBlock, 0, cuda_backend::stream()>>>(d_p, d_logq, d_g, d_dp,
                                                                                                 d_dlogq, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void entropy_forward(const float* d_p, float* d_out, std::int64_t rows, std::int64_t cols) {
  if (rows == 0) return;
  divergence_forward_kernel<<<row_blocks(rows), kBlock, 0, cuda_backend::stream()>>>(d_p, nullptr, d_out, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void entropy_backward(const float* d_p, const float* d_g, float* d_dp, std::int64_t rows, std::int64_t cols) {
  if (rows * cols == 0) return;
  divergence_backward_kernel<<<element_blocks(rows * cols), kBlock, 0, cuda_backend::stream()>>>(
      d_p, nullptr, d_g, d_dp, nullptr, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void group_sum_rows(const float* d_x, float* d_out, float scale, std::int64_t groups, std::int64_t group,
                    std::int64_t cols) {
  if (groups * cols == 0) return;
  group_sum_kernel<<<element_blocks(groups * cols), kBlock, 0, cuda_backend::stream()>>>(d_x, d_out, scale, groups,
                                                                                         group, cols);
  CUDA_CHECK_LAUNCH();
}

void repeat_rows(const float* d_x, float* d_out, float scale, std::int64_t groups, std::int64_t group,
                 std::int64_t cols) {
  if (groups * group * cols == 0) return;
  repeat_kernel<<<element_blocks(groups * group * cols), kBlock, 0, cuda_backend::stream()>>>(d_x, d_out, scale, groups,
                                                                                              group, cols);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
