// Slow, obviously-correct double-precision references for group normalization, softmax
// cross-entropy and argmax. Inputs are flat row-major vectors; x is [n, c, spatial]. The group
// norm backward is formed from the explicit Jacobian of x̂ rather than the closed form the kernels
// use, so the two derivations check each other.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace aegis::reference {

struct GroupNormForward {
  std::vector<double> y, xhat, rstd;  // rstd per (n, g)
};

// gamma and beta empty: no affine map.
inline GroupNormForward group_norm_forward(const std::vector<double>& x, std::int64_t n, std::int64_t c,
                                           std::int64_t spatial, std::int64_t groups, const std::vector<double>& gamma,
                                           const std::vector<double>& beta, double eps) {
  const std::int64_t m = c / groups * spatial;
  GroupNormForward out{std::vector<double>(x.size()), std::vector<double>(x.size()),
                       std::vector<double>(static_cast<std::size_t>(n * groups))};
  for (std::int64_t b = 0; b < n * groups; ++b) {
    double mean = 0.0;
    for (std::int64_t i = 0; i < m; ++i) mean += x[b * m + i];
    mean /= static_cast<double>(m);
    double var = 0.0;
    for (std::int64_t i = 0; i < m; ++i) var += (x[b * m + i] - mean) * (x[b * m + i] - mean);
    var /= static_cast<double>(m);
    const double r = 1.0 / std::sqrt(var + eps);
    out.rstd[b] = r;
    for (std::int64_t i = 0; i < m; ++i) {
      const std::int64_t at = b * m + i;
      const std::int64_t ch = (at / spatial) % c;
      out.xhat[at] = (x[at] - mean) * r;
      out.y[at] = gamma.empty() ? out.xhat[at] : gamma[ch] * out.xhat[at] + beta[ch];
    }
  }
  return out;
}

struct GroupNormBackward {
  std::vector<double> dx, dgamma, dbeta;
};

// ∂x̂_i/∂x_j = r·(δ_ij − 1/M − x̂_i·x̂_j/M) within a group (zero across groups), so
// dx_j = Σ_i g_i·γ[c(i)]·∂x̂_i/∂x_j; dγ[c] = Σ g·x̂, dβ[c] = Σ g over batch and positions.
inline GroupNormBackward group_norm_backward(const std::vector<double>& gy, const GroupNormForward& fwd, std::int64_t n,
                                             std::int64_t c, std::int64_t spatial, std::int64_t groups,
                                             const std::vector<double>& gamma) {
  const std::int64_t m = c / groups * spatial;
  GroupNormBackward out{std::vector<double>(gy.size(), 0.0), std::vector<double>(static_cast<std::size_t>(c), 0.0),
                        std::vector<double>(static_cast<std::size_t>(c), 0.0)};
  for (std::int64_t b = 0; b < n * groups; ++b) {
    for (std::int64_t j = 0; j < m; ++j) {
      double acc = 0.0;
      for (std::int64_t i = 0; i < m; ++i) {
        const std::int64_t at = b * m + i;
        const double scale = gamma.empty() ? 1.0 : gamma[(at / spatial) % c];
        const double jac = fwd.rstd[b] * ((i == j ? 1.0 : 0.0) - 1.0 / static_cast<double>(m) -
                                          fwd.xhat[at] * fwd.xhat[b * m + j] / static_cast<double>(m));
        acc += gy[at] * scale * jac;
      }
      out.dx[b * m + j] = acc;
    }
  }
  for (std::size_t at = 0; at < gy.size(); ++at) {
    const std::int64_t ch = (static_cast<std::int64_t>(at) / spatial) % c;
    out.dgamma[ch] += gy[at] * fwd.xhat[at];
    out.dbeta[ch] += gy[at];
  }
  return out;
}

// log Σ_j exp(z_j), shifted by the row maximum.
inline double logsumexp(const double* z, std::int64_t k) {
  double m = z[0];
  for (std::int64_t j = 1; j < k; ++j) m = z[j] > m ? z[j] : m;
  double s = 0.0;
  for (std::int64_t j = 0; j < k; ++j) s += std::exp(z[j] - m);
  return m + std::log(s);
}

inline std::vector<double> cross_entropy_rows(const std::vector<double>& z, const std::vector<std::int32_t>& y,
                                              std::int64_t n, std::int64_t k) {
  std::vector<double> loss(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) loss[i] = logsumexp(&z[i * k], k) - z[i * k + y[i]];
  return loss;
}

// d loss_i / d z_ij = softmax(z_i)_j − [j = y_i], weighted by row_weight[i].
inline std::vector<double> cross_entropy_grad(const std::vector<double>& z, const std::vector<std::int32_t>& y,
                                              std::int64_t n, std::int64_t k, const std::vector<double>& row_weight) {
  std::vector<double> g(z.size());
  for (std::int64_t i = 0; i < n; ++i) {
    const double lse = logsumexp(&z[i * k], k);
    for (std::int64_t j = 0; j < k; ++j)
      g[i * k + j] = (std::exp(z[i * k + j] - lse) - (j == y[i] ? 1.0 : 0.0)) * row_weight[i];
  }
  return g;
}

// First index of the row maximum (inputs without NaN).
inline std::vector<std::int32_t> argmax_rows(const std::vector<double>& z, std::int64_t n, std::int64_t k) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    std::int64_t best = 0;
    for (std::int64_t j = 1; j < k; ++j)
      if (z[i * k + j] > z[i * k + best]) best = j;
    out[i] = static_cast<std::int32_t>(best);
  }
  return out;
}

}  // namespace aegis::reference
