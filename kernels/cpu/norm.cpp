#include "kernels/norm.h"

#include <cmath>

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 14;  // elements; below this a thread team costs more than it saves
}

void group_norm_forward(const float* x, const float* gamma, const float* beta, float* y, float* xhat, float* rstd,
                        std::int64_t n, std::int64_t c, std::int64_t spatial, std::int64_t groups, float eps) {
  const std::int64_t per_group = c / groups;
  const std::int64_t m = per_group * spatial;
  if (n == 0 || m == 0) return;
  const std::int64_t blocks = n * groups;
#pragma omp parallel for schedule(static) if (n * c * spatial > kParallelMin)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const float* xb = x + b * m;
    // Two passes in double: the mean first, then squared deviations from it, so that a large
    // common offset does not cancel catastrophically as it would in E[x²] − E[x]².
    double sum = 0.0;
    for (std::int64_t i = 0; i < m; ++i) sum += xb[i];
    const double mean = sum / static_cast<double>(m);
    double sq = 0.0;
    for (std::int64_t i = 0; i < m; ++i) {
      const double d = xb[i] - mean;
      sq += d * d;
    }
    const double r = 1.0 / std::sqrt(sq / static_cast<double>(m) + static_cast<double>(eps));
    rstd[b] = static_cast<float>(r);
    const std::int64_t c0 = (b % groups) * per_group;
    for (std::int64_t j = 0; j < per_group; ++j) {
      const double scale = gamma ? gamma[c0 + j] : 1.0;
      const double shift = beta ? beta[c0 + j] : 0.0;
      for (std::int64_t s = 0; s < spatial; ++s) {
        const std::int64_t i = b * m + j * spatial + s;
        const double h = (x[i] - mean) * r;
        if (xhat) xhat[i] = static_cast<float>(h);
        y[i] = static_cast<float>(scale * h + shift);
      }
    }
  }
}

// Per group of M elements, with ĝ = g·γ[c] (g alone without affine) and r = rstd:
//   ∂L/∂x_j = r · (ĝ_j − (1/M) Σ_i ĝ_i − x̂_j · (1/M) Σ_i ĝ_i x̂_i),
// the batch-norm backward (Ioffe & Szegedy 2015, §3) taken over each group instead of each
// channel (Wu & He 2018, eq. 1–3). It is exact with eps included, since x̂ already carries it.
// dγ[c] = Σ_{n,s} g·x̂ and dβ[c] = Σ_{n,s} g.
void group_norm_backward(const float* gy, const float* xhat, const float* rstd, const float* gamma, float* dx,
                         float* dgamma, float* dbeta, std::int64_t n, std::int64_t c, std::int64_t spatial,
                         std::int64_t groups) {
  const std::int64_t per_group = c / groups;
  const std::int64_t m = per_group * spatial;
  const bool parallel = n * c * spatial > kParallelMin;
  if (dx && n > 0 && m > 0) {
    const std::int64_t blocks = n * groups;
#pragma omp parallel for schedule(static) if (parallel)
    for (std::int64_t b = 0; b < blocks; ++b) {
      const std::int64_t c0 = (b % groups) * per_group;
      const float* gb = gy + b * m;
      const float* hb = xhat + b * m;
      double sum_g = 0.0, sum_gh = 0.0;
      for (std::int64_t j = 0; j < per_group; ++j) {
        const double scale = gamma ? gamma[c0 + j] : 1.0;
        for (std::int64_t s = 0; s < spatial; ++s) {
          const double g = gb[j * spatial + s] * scale;
          sum_g += g;
          sum_gh += g * hb[j * spatial + s];
        }
      }
      const double mean_g = sum_g / static_cast<double>(m);
      const double mean_gh = sum_gh / static_cast<double>(m);
      const double r = rstd[b];
      for (std::int64_t j = 0; j < per_group; ++j) {
        const double scale = gamma ? gamma[c0 + j] : 1.0;
        for (std::int64_t s = 0; s < spatial; ++s) {
          const std::int64_t i = j * spatial + s;
          dx[b * m + i] = static_cast<float>(r * (gb[i] * scale - mean_g - hb[i] * mean_gh));
        }
      }
    }
  }
  if (dgamma || dbeta) {
#pragma omp parallel for schedule(static) if (parallel)
    for (std::int64_t ch = 0; ch < c; ++ch) {
      double sum_g = 0.0, sum_gh = 0.0;
      for (std::int64_t e = 0; e < n; ++e) {
        const std::int64_t base = (e * c + ch) * spatial;
        for (std::int64_t s = 0; s < spatial; ++s) {
          sum_g += gy[base + s];
          sum_gh += static_cast<double>(gy[base + s]) * xhat[base + s];
        }
      }
      if (dgamma) dgamma[ch] = static_cast<float>(sum_gh);
      if (dbeta) dbeta[ch] = static_cast<float>(sum_g);
    }
  }
}

}  // namespace aegis::kernels::cpu
