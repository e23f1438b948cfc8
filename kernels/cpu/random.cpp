#include "kernels/random.h"

namespace aegis::kernels::cpu {

void fill_uniform(float* out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float lo, float hi) {
  const float width = hi - lo;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) out[i] = lo + width * philox::uniform(key, offset + static_cast<std::uint64_t>(i));
}

void fill_normal(float* out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float mean, float std) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(mean + std * philox::normal_double(key, offset + static_cast<std::uint64_t>(i)));
}

void fill_laplace(float* out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float scale) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(scale * philox::laplace_double(key, offset + static_cast<std::uint64_t>(i)));
}

}  // namespace aegis::kernels::cpu
