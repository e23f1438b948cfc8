#include "kernels/smoothing.h"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

// One thread per (row, pair of elements) over rows·(⌊d/2⌋ + 1) pair slots, grid-stride. Pairs are
// aligned to the noise stream (element index sample·d + j), so when sample·d is odd a row begins
// and ends on half pairs; each thread computes its pair and writes the elements inside its row.
__global__ void noisy_batch_kernel(float* out, const float* x, const long long* ids, SmoothingBatch b) {
  const long long pairs_per_row = b.d / 2 + 1;
  const long long total = b.rows * pairs_per_row;
  const long long row_start = b.row_start_device ? *reinterpret_cast<const long long*>(b.row_start_device) : b.row_start;
  for (long long t = blockIdx.x * 1LL * blockDim.x + threadIdx.x; t < total; t += 1LL * gridDim.x * blockDim.x) {
    const long long r = t / pairs_per_row;
    const long long p = t - r * pairs_per_row;
    const long long g = row_start + r;
    const long long slot = g / b.samples, sample = g - slot * b.samples;
    const unsigned long long begin = static_cast<unsigned long long>(sample) * static_cast<unsigned long long>(b.d);
    const unsigned long long pair = (begin >> 1) + static_cast<unsigned long long>(p);
    const long long j0 = static_cast<long long>(2 * pair - begin);  // −1 when the row starts mid-pair
    const long long j1 = j0 + 1;
    if (j0 >= b.d) continue;
    const philox::Key key{b.seed, b.purpose, static_cast<unsigned int>(ids[slot])};
    float z0, z1;
    smoothing_normal_pair(key, pair, z0, z1);
    const float* src = x + slot * b.d;
    float* dst = out + r * b.d;
    if (j0 >= 0) dst[j0] = __fadd_rn(src[j0], __fmul_rn(b.sigma, z0));
    if (j1 < b.d) dst[j1] = __fadd_rn(src[j1], __fmul_rn(b.sigma, z1));
  }
}

__global__ void count_argmax_kernel(long long* counts, const float* logits, SmoothingBatch b, long long k,
                                    long long* nan_rows) {
  const long long row_start = b.row_start_device ? *reinterpret_cast<const long long*>(b.row_start_device) : b.row_start;
  for (long long r = blockIdx.x * 1LL * blockDim.x + threadIdx.x; r < b.rows; r += 1LL * gridDim.x * blockDim.x) {
    const long long slot = (row_start + r) / b.samples;
    const float* z = logits + r * k;
    long long best = 0;
    bool nan = isnan(z[0]);
    for (long long c = 1; c < k; ++c) {
      nan = nan || isnan(z[c]);
      if (z[c] > z[best]) best = c;
    }
    if (nan)
      atomicAdd(reinterpret_cast<unsigned long long*>(nan_rows), 1ULL);
    else
      atomicAdd(reinterpret_cast<unsigned long long*>(counts + slot * k + best), 1ULL);
  }
}

__global__ void advance_row_start_kernel(long long* row_start, long long delta) {
  *row_start += delta;
}

}  // namespace

void noisy_batch(float* d_out, const float* d_x, const std::int64_t* d_ids, const SmoothingBatch& batch) {
  if (batch.rows <= 0 || batch.d <= 0) return;
  constexpr int kBlock = 256;
  const long long threads = batch.rows * (batch.d / 2 + 1);
  noisy_batch_kernel<<<cuda_backend::grid_for(threads, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      d_out, d_x, reinterpret_cast<const long long*>(d_ids), batch);
  CUDA_CHECK_LAUNCH();
}

void count_argmax(std::int64_t* d_counts, const float* d_logits, const SmoothingBatch& batch, std::int64_t k,
                  std::int64_t* d_nan_rows) {
  if (batch.rows <= 0) return;
  constexpr int kBlock = 256;
  count_argmax_kernel<<<cuda_backend::grid_for(batch.rows, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      reinterpret_cast<long long*>(d_counts), d_logits, batch, k, reinterpret_cast<long long*>(d_nan_rows));
  CUDA_CHECK_LAUNCH();
}

void advance_row_start(std::int64_t* d_row_start, std::int64_t delta) {
  advance_row_start_kernel<<<1, 1, 0, cuda_backend::stream()>>>(reinterpret_cast<long long*>(d_row_start), delta);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
