#include "kernels/loss.h"
#include "core/cuda/check.h"
#include "kernels/cuda/warp_reduce.cuh"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / 32;  // one warp per row

// The row maximum m (fmaxf drops NaN; a NaN logit reaches the loss through exp(NaN − m)) and
// Σ_j exp(z_j − m), both returned to every lane of the warp.
__device__ void row_max_and_sum(const float* z, long long k, int lane, float& m, float& sum) {
  m = -INFINITY;
  for (long long j = lane; j < k; j += 32) m = fmaxf(m, z[j]);
  m = warp_max(m);
  sum = 0.0f;
  for (long long j = lane; j < k; j += 32) sum += expf(z[j] - m);
  sum = warp_sum(sum);
}

// The row of warp w is blockIdx.x·kRowsPerBlock + w. A warp past the last row returns as a
// whole, so the full-mask shuffles below always see 32 active lanes.
__device__ long long warp_row() { return blockIdx.x * 1LL * kRowsPerBlock + (threadIdx.x >> 5); }

__global__ void cross_entropy_forward_kernel(const float* logits, const int* labels, float* losses, long long n,
                                             long long k) {
  const long long row = warp_row();
  if (row >= n) return;
  const int lane = threadIdx.x & 31;
  const float* z = logits + row * k;
  float m, sum;
  row_max_and_sum(z, k, lane, m, sum);
  if (lane == 0) {
    const int y = labels[row];
    // A label outside [0, k) gives NaN instead of an out-of-bounds read (nn/functional/loss.cpp).
    const float zy = (y >= 0 && y < k) ? z[y] : NAN;
    // (m − z_y) first: adding m to the log-sum would round at the spacing of floats near m.
    losses[row] = logf(sum) + (m - zy);
  }
}

// total[0] = scale · Σ losses, one block, a fixed summation order (run-to-run deterministic).
__global__ void sum_losses_kernel(const float* losses, float* total, float scale, long long n) {
  __shared__ float scratch[32];
  float partial = 0.0f;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) partial += losses[i];
  partial = warp_sum(partial);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = partial;
  __syncthreads();
  if (warp == 0) {
    partial = lane < (blockDim.x >> 5) ? scratch[lane] : 0.0f;
    partial = warp_sum(partial);
    if (lane == 0) total[0] = partial * scale;
  }
}

__global__ void cross_entropy_backward_kernel(const float* logits, const int* labels, const float* grad,
                                              bool per_row_grad, float scale, float* dlogits, long long n,
                                              long long k) {
  const long long row = warp_row();
  if (row >= n) return;
  const int lane = threadIdx.x & 31;
  const float* z = logits + row * k;
  float m, sum;
  row_max_and_sum(z, k, lane, m, sum);
  const float inv_sum = 1.0f / sum;
  const float g = scale * (per_row_grad ? grad[row] : grad[0]);
  const int y = labels[row];
  // A label outside [0, k) (not checked on the host for device labels) makes the row's gradient
  // NaN, as its loss is, so that no update or attack step silently uses it.
  const bool valid = y >= 0 && y < k;
  for (long long j = lane; j < k; j += 32) {
    const float p = expf(z[j] - m) * inv_sum;
    dlogits[row * k + j] = valid ? (p - (j == y ? 1.0f : 0.0f)) * g : NAN;
  }
}

// True when candidate (v, j) should replace the running best (best, at): a NaN beats any
// number, a larger value wins, and equal values keep the smaller index.
__device__ bool replaces(float v, long long j, float best, long long at) {
  const bool v_nan = isnan(v), best_nan = isnan(best);
  if (v_nan || best_nan) return v_nan && (!best_nan || j < at);
  return v > best || (v == best && j < at);
}

// The row's argmax, returned to every lane: each lane scans its strided columns in increasing
// order, then the 32 candidates are combined by shuffles.
__device__ long long warp_argmax(const float* z, long long k, int lane) {
  float best = NAN;
  long long at = -1;
  for (long long j = lane; j < k; j += 32)
    if (at < 0 || replaces(z[j], j, best, at)) {
      best = z[j];
      at = j;
    }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, best, offset);
    const long long other_at = __shfl_xor_sync(0xffffffffu, at, offset);
    // A lane with no column (k < 32) carries at = −1 and never wins.
    if (other_at >= 0 && (at < 0 || replaces(other, other_at, best, at))) {
      best = other;
      at = other_at;
    }
  }
  return at;
}

__global__ void argmax_kernel(const float* logits, int* out, long long n, long long k) {
  const long long row = warp_row();
  if (row >= n) return;
  const int lane = threadIdx.x & 31;
  const long long at = warp_argmax(logits + row * k, k, lane);
  if (lane == 0) out[row] = static_cast<int>(at);
}

__global__ void count_correct_kernel(const float* logits, const int* labels, int* count, long long n, long long k) {
  __shared__ int block_count;
  if (threadIdx.x == 0) block_count = 0;
  __syncthreads();
  const long long row = warp_row();
  if (row < n) {
    const int lane = threadIdx.x & 31;
    const long long at = warp_argmax(logits + row * k, k, lane);
    if (lane == 0 && at == labels[row]) atomicAdd(&block_count, 1);
  }
  __syncthreads();
  if (threadIdx.x == 0 && block_count) atomicAdd(count, block_count);
}

unsigned row_blocks(std::int64_t n) { return static_cast<unsigned>((n + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

void cross_entropy_forward(const float* d_logits, const std::int32_t* d_labels, float* d_losses, float* d_total,
                           float total_scale, std::int64_t n, std::int64_t k) {
  if (n > 0) {
    cross_entropy_forward_kernel<<<row_blocks(n), kBlock, 0, cuda_backend::stream()>>>(d_logits, d_labels, d_losses, n,
                                                                                       k);
    CUDA_CHECK_LAUNCH();
  }
  if (d_total) {
    // Launched for n = 0 too, so that an empty sum is written as 0.
    sum_losses_kernel<<<1, kBlock, 0, cuda_backend::stream()>>>(d_losses, d_total, total_scale, n);
    CUDA_CHECK_LAUNCH();
  }
}

void cross_entropy_backward(const float* d_logits, const std::int32_t* d_labels, const float* d_grad, bool per_row_grad,
                            float scale, float* d_dlogits, std::int64_t n, std::int64_t k) {
  if (n == 0 || k == 0) return;
  cross_entropy_backward_kernel<<<row_blocks(n), kBlock, 0, cuda_backend::stream()>>>(
      d_logits, d_labels, d_grad, per_row_grad, scale, d_dlogits, n, k);
  CUDA_CHECK_LAUNCH();
}

void argmax_rows(const float* d_logits, std::int32_t* d_out, std::int64_t n, std::int64_t k) {
  if (n == 0) return;
  argmax_kernel<<<row_blocks(n), kBlock, 0, cuda_backend::stream()>>>(d_logits, d_out, n, k);
  CUDA_CHECK_LAUNCH();
}

void count_correct(const float* d_logits, const std::int32_t* d_labels, std::int32_t* d_count, std::int64_t n,
                   std::int64_t k) {
  CUDA_CHECK(cudaMemsetAsync(d_count, 0, sizeof(std::int32_t), cuda_backend::stream()));
  if (n == 0) return;
  count_correct_kernel<<<row_blocks(n), kBlock, 0, cuda_backend::stream()>>>(d_logits, d_labels, d_count, n, k);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
