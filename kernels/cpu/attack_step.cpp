#include "kernels/attack_step.h"

#include <algorithm>
#include <cmath>

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 15;  // elements; below this a thread team costs more than it saves

float sign_of(float v) {
  return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
}

// The Linf step of one example along sign(dir), projected and clipped with exact float bounds.
void linf_row(float* x, const float* x0, const float* dir, double eps, double alpha, std::int64_t d) {
  for (std::int64_t j = 0; j < d; ++j) {
    const double lo = std::max(0.0, static_cast<double>(x0[j]) - eps);
    const double hi = std::min(1.0, static_cast<double>(x0[j]) + eps);
    const double v = static_cast<double>(x[j]) + alpha * sign_of(dir[j]);
    x[j] = round_into(std::min(std::max(v, lo), hi), lo, hi);
  }
}

// The L2 step of one example along dir/‖dir‖₂, projected onto the ball and clipped to the box.
void l2_row(float* x, const float* x0, const float* dir, double eps, double alpha, std::int64_t d) {
  double dir_sq = 0.0;
  for (std::int64_t j = 0; j < d; ++j) dir_sq += static_cast<double>(dir[j]) * dir[j];
  const double scale = dir_sq > 0.0 ? alpha / std::sqrt(dir_sq) : 0.0;
  double delta_sq = 0.0;
  for (std::int64_t j = 0; j < d; ++j) {
    const double delta = static_cast<double>(x[j]) + scale * dir[j] - x0[j];
    delta_sq += delta * delta;
  }
  const double radius = l2_target_radius(eps, d), norm = std::sqrt(delta_sq);
  const double factor = norm > radius ? radius / norm : 1.0;
  for (std::int64_t j = 0; j < d; ++j) {
    const double delta = (static_cast<double>(x[j]) + scale * dir[j] - x0[j]) * factor;
    x[j] = static_cast<float>(std::min(std::max(x0[j] + delta, 0.0), 1.0));
  }
}

// g ← μ·g + ∇/‖∇‖₁ for one example (Dong et al. 2018, Alg. 1).
void momentum_row(float* g, const float* grad, double decay, std::int64_t d) {
  double l1 = 0.0;
  for (std::int64_t j = 0; j < d; ++j) l1 += std::fabs(static_cast<double>(grad[j]));
  const double inv_l1 = l1 > 0.0 ? 1.0 / l1 : 0.0;
  for (std::int64_t j = 0; j < d; ++j) g[j] = static_cast<float>(decay * g[j] + grad[j] * inv_l1);
}
}  // namespace

void attack_step(const AttackStepArgs& a, float* x, const float* x0, const float* grad, float* momentum,
                 const float* eps, const float* alpha) {
  const std::int64_t d = a.d;
#pragma omp parallel for schedule(static) if (a.n * d > kParallelMin)
  for (std::int64_t i = 0; i < a.n; ++i) {
    float* xi = x + i * d;
    const float* x0i = x0 + i * d;
    const float* dir = grad + i * d;
    if (a.momentum) {
      momentum_row(momentum + i * d, dir, a.decay, d);
      dir = momentum + i * d;
    }
    if (a.norm == AttackNorm::Linf) {
      linf_row(xi, x0i, dir, eps[i], alpha[i], d);
    } else {
      l2_row(xi, x0i, dir, eps[i], alpha[i], d);
    }
  }
}

void attack_random_start(AttackNorm norm, float* x, const float* x0, const float* eps, const std::int32_t* example_ids,
                         std::int64_t n, std::int64_t d, const philox::Key& key) {
#pragma omp parallel for schedule(static) if (n * d > kParallelMin / 8)
  for (std::int64_t i = 0; i < n; ++i) {
    float* xi = x + i * d;
    const float* x0i = x0 + i * d;
    const std::uint64_t base = static_cast<std::uint64_t>(example_ids[i]) * static_cast<std::uint64_t>(d);
    const double e = eps[i];
    if (norm == AttackNorm::Linf) {
      for (std::int64_t j = 0; j < d; ++j) {
        const double u = philox::uniform(key, base + static_cast<std::uint64_t>(j));
        const double lo = std::max(0.0, x0i[j] - e), hi = std::min(1.0, x0i[j] + e);
        const double v = x0i[j] + e * (2.0 * u - 1.0);
        x[i * d + j] = round_into(std::min(std::max(v, lo), hi), lo, hi);
      }
    } else {
      // Direction z/‖z‖ with z standard normal (uniform on the sphere), radius ε·U^{1/d}
      // (P(r ≤ ε·t) = t^d, the volume fraction of the inner ball).
      double z_sq = 0.0;
      for (std::int64_t j = 0; j < d; ++j) {
        xi[j] = philox::normal(key, base + static_cast<std::uint64_t>(j));
        z_sq += static_cast<double>(xi[j]) * xi[j];
      }
      const double u = philox::uniform(key, kRadiusIndexBase + static_cast<std::uint64_t>(example_ids[i]));
      const double radius = l2_target_radius(e, d) * std::pow(u, 1.0 / static_cast<double>(d));
      const double scale = z_sq > 0.0 ? radius / std::sqrt(z_sq) : 0.0;
      for (std::int64_t j = 0; j < d; ++j)
        xi[j] = static_cast<float>(std::min(std::max(x0i[j] + xi[j] * scale, 0.0), 1.0));
    }
  }
}

void copy_rows(const float* src, const std::int32_t* src_rows, float* dst, const std::int32_t* dst_rows,
               std::int64_t count, std::int64_t d) {
#pragma omp parallel for schedule(static) if (count * d > kParallelMin)
  for (std::int64_t j = 0; j < count; ++j)
    std::copy(src + static_cast<std::int64_t>(src_rows[j]) * d, src + (static_cast<std::int64_t>(src_rows[j]) + 1) * d,
              dst + static_cast<std::int64_t>(dst_rows[j]) * d);
}

void perturbation_norms(AttackNorm norm, const float* x, const float* x0, float* out, std::int64_t n, std::int64_t d) {
#pragma omp parallel for schedule(static) if (n * d > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    double acc = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double diff = static_cast<double>(x[i * d + j]) - x0[i * d + j];
      acc = norm == AttackNorm::Linf ? std::max(acc, std::fabs(diff)) : acc + diff * diff;
    }
    out[i] = static_cast<float>(norm == AttackNorm::Linf ? acc : std::sqrt(acc));
  }
}

void free_input(const float* x, const float* delta, float* x_adv, std::int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (std::int64_t i = 0; i < n; ++i) x_adv[i] = free_input_element(x[i], delta[i]);
}

void free_update(float* delta, const float* grad, float eps, std::int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (std::int64_t i = 0; i < n; ++i) delta[i] = free_delta_element(delta[i], grad[i], eps);
}

}  // namespace aegis::kernels::cpu
