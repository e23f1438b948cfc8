#include "kernels/augment.h"

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 14;  // output elements below which one thread is faster
}  // namespace

void augment_rows(const AugmentGeometry& g, const float* x, const std::uint64_t* row_keys,
                  const philox::Key& geometry_key, const philox::Key& noise_key, float* y) {
  const std::int64_t h_n = g.height, w_n = g.width, d = g.row_elements();
  const bool noisy = g.noise_sigma > 0.0f;
#pragma omp parallel for schedule(static) if (g.rows * d > kParallelMin)
  for (std::int64_t r = 0; r < g.rows; ++r) {
    const RowTransform t = row_transform(geometry_key, row_keys[r], g.pad, g.flip);
    const float* x_r = x + r * d;
    float* y_r = y + r * d;
    const std::uint64_t noise_base = row_keys[r] * static_cast<std::uint64_t>(d);
    for (std::int64_t c = 0; c < g.channels; ++c)
      for (std::int64_t h = 0; h < h_n; ++h) {
        const std::int64_t sh = extended_index(h + t.dy, h_n, g.mirror);
        const float* src = sh < 0 ? nullptr : x_r + (c * h_n + sh) * w_n;
        float* dst = y_r + (c * h_n + h) * w_n;
        for (std::int64_t w = 0; w < w_n; ++w) {
          const std::int64_t sw = extended_index((t.flip ? w_n - 1 - w : w) + t.dx, w_n, g.mirror);
          dst[w] = src && sw >= 0 ? src[sw] : 0.0f;
        }
        if (noisy) {
          const std::uint64_t base = noise_base + static_cast<std::uint64_t>((c * h_n + h) * w_n);
          for (std::int64_t w = 0; w < w_n; ++w)
            dst[w] += static_cast<float>(g.noise_sigma * philox::normal_double(noise_key, base + w));
        }
      }
  }
}

}  // namespace aegis::kernels::cpu
