#include "kernels/smoothing.h"

#include <cmath>

namespace aegis::kernels::cpu {

namespace {

// dst[j] = src[j] + σ·z(begin + j), j < d, for the noise stream of `key`.
void noisy_row(float* dst, const float* src, const philox::Key& key, std::uint64_t begin, std::int64_t d,
               float sigma) {
  std::int64_t j = 0;
  if (begin & 1) {  // the row starts on the second half of a pair
    dst[0] = src[0] + sigma * smoothing_normal(key, begin);
    j = 1;
  }
  const std::uint64_t first_pair = (begin + static_cast<std::uint64_t>(j)) >> 1;
  const std::int64_t pairs = (d - j) / 2;
  float* out = dst + j;
  const float* in = src + j;
#pragma omp simd
  for (std::int64_t p = 0; p < pairs; ++p) {
    float z0, z1;
    smoothing_normal_pair(key, first_pair + static_cast<std::uint64_t>(p), z0, z1);
    out[2 * p] = in[2 * p] + sigma * z0;
    out[2 * p + 1] = in[2 * p + 1] + sigma * z1;
  }
  for (std::int64_t t = j + 2 * pairs; t < d; ++t)
    dst[t] = src[t] + sigma * smoothing_normal(key, begin + static_cast<std::uint64_t>(t));
}

}  // namespace

void noisy_batch(float* out, const float* x, const std::int64_t* ids, const SmoothingBatch& b) {
  const std::int64_t row_start = b.row_start_device ? *b.row_start_device : b.row_start;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < b.rows; ++r) {
    const std::int64_t g = row_start + r;
    const std::int64_t slot = g / b.samples, sample = g - slot * b.samples;
    const philox::Key key{b.seed, b.purpose, static_cast<std::uint32_t>(ids[slot])};
    noisy_row(out + r * b.d, x + slot * b.d, key, static_cast<std::uint64_t>(sample) * static_cast<std::uint64_t>(b.d),
              b.d, b.sigma);
  }
}

void count_argmax(std::int64_t* counts, const float* logits, const SmoothingBatch& b, std::int64_t k,
                  std::int64_t* nan_rows) {
  const std::int64_t row_start = b.row_start_device ? *b.row_start_device : b.row_start;
  for (std::int64_t r = 0; r < b.rows; ++r) {
    const std::int64_t slot = (row_start + r) / b.samples;
    const float* z = logits + r * k;
    std::int64_t best = 0;
    bool nan = std::isnan(z[0]);
    for (std::int64_t c = 1; c < k; ++c) {
      nan = nan || std::isnan(z[c]);
      if (z[c] > z[best]) best = c;
    }
    if (nan)
      ++*nan_rows;
    else
      ++counts[slot * k + best];
  }
}

void advance_row_start(std::int64_t* row_start, std::int64_t delta) {
  *row_start += delta;
}

}  // namespace aegis::kernels::cpu
