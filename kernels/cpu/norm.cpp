#include "kernels/norm.h"

#include <cmath>

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 14;  // elements; below this a thread team costs more than it saves

// Σ (v[i] − shift) (Square false) or Σ (v[i] − shift)² (Square true) over m floats, in double.
// Eight independent double lanes let the compiler vectorize without reassociating one sum.
template <bool Square>
__attribute__((always_inline)) inline double lanes(const float* v, std::int64_t m, double shift) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 8 <= m; i += 8)
    for (int l = 0; l < 8; ++l) {
      const double d = static_cast<double>(v[i + l]) - shift;
      acc[l] += Square ? d * d : d;
    }
  double total = 0.0;
  for (; i < m; ++i) {
    const double d = static_cast<double>(v[i]) - shift;
    total += Square ? d * d : d;
  }
  for (double a : acc) total += a;
  return total;
}

// One group of one example: its statistics, y and (when training) x̂. Compiled for AVX-512, AVX2
// and the baseline ISA, picked at load time: its double-precision sums are bound by arithmetic,
// which the wider vectors halve (and halve again).
__attribute__((target_clones("avx512f", "avx2", "default"))) void group_norm_block(
    const float* x, const float* gamma, const float* beta, float* y, float* xhat, float* rstd, std::int64_t b,
    std::int64_t per_group, std::int64_t spatial, std::int64_t groups, std::int64_t m, float eps) {
  const float* xb = x + b * m;
  // Two passes in double: the mean first, then squared deviations from it, so that a large
  // common offset does not cancel catastrophically as it would in E[x²] − E[x]².
  const double mean = lanes<false>(xb, m, 0.0) / static_cast<double>(m);
  const double r = 1.0 / std::sqrt(lanes<true>(xb, m, mean) / static_cast<double>(m) + static_cast<double>(eps));
  rstd[b] = static_cast<float>(r);
  const std::int64_t c0 = (b % groups) * per_group;
  for (std::int64_t j = 0; j < per_group; ++j) {
    const double scale = gamma ? gamma[c0 + j] : 1.0;
    const double shift = beta ? beta[c0 + j] : 0.0;
    const float* xs = xb + j * spatial;
    float* ys = y + b * m + j * spatial;
    if (xhat) {
      float* hs = xhat + b * m + j * spatial;
      for (std::int64_t s = 0; s < spatial; ++s) {
        const double h = (xs[s] - mean) * r;
        hs[s] = static_cast<float>(h);
        ys[s] = static_cast<float>(scale * h + shift);
      }
    } else {
      // The same arithmetic without storing x̂ (inference): a loop without a branch vectorizes.
      for (std::int64_t s = 0; s < spatial; ++s) ys[s] = static_cast<float>(scale * ((xs[s] - mean) * r) + shift);
    }
  }
}

}  // namespace

void group_norm_forward(const float* x, const float* gamma, const float* beta, float* y, float* xhat, float* rstd,
                        std::int64_t n, std::int64_t c, std::int64_t spatial, std::int64_t groups, float eps) {
  const std::int64_t per_group = c / groups;
  const std::int64_t m = per_group * spatial;
  if (n == 0 || m == 0) return;
  const std::int64_t blocks = n * groups;
#pragma omp parallel for schedule(static) if (n * c * spatial > kParallelMin)
  for (std::int64_t b = 0; b < blocks; ++b)
    group_norm_block(x, gamma, beta, y, xhat, rstd, b, per_group, spatial, groups, m, eps);
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
