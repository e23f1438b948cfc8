#include "kernels/attack_opt.h"

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 15;  // elements; below this a thread team costs more than it saves

double sq_distance(const float* x, const float* x0, std::int64_t d) {
  double acc = 0.0;
  for (std::int64_t j = 0; j < d; ++j) {
    const double diff = static_cast<double>(x[j]) - x0[j];
    acc += diff * diff;
  }
  return acc;
}

// The L2 projection of the point v(j) (j < d) onto the ball of radius l2_target_radius(eps, d)
// around x0, intersected with the box: the largest s ∈ [0, 1] with ‖y(s) − x0‖₂ ≤ radius, by
// bisection (Croce & Hein 2020 need the exact projection; see the header).
template <class Point>
double l2_projection_scale(const Point& v, const float* x0, double eps, std::int64_t d) {
  const double radius = l2_target_radius(eps, d);
  const auto dist = [&](double s) {
    double acc = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double y = apgd_l2_point(v(j), x0[j], s) - x0[j];
      acc += y * y;
    }
    return std::sqrt(acc);
  };
  if (dist(1.0) <= radius) return 1.0;
  double lo = 0.0, hi = 1.0;  // dist(lo) ≤ radius < dist(hi)
  for (int it = 0; it < kApgdBisectionSteps; ++it) {
    const double mid = (lo + hi) / 2.0;
    (dist(mid) <= radius ? lo : hi) = mid;
  }
  return lo;
}

// One APGD step of one example (x, x_prev, x0 its rows; g its gradient row), in place.
void apgd_row(const ApgdStepArgs& a, float* x, float* x_prev, const float* x0, const float* g, double eta, double eps) {
  const std::int64_t d = a.d;
  double g_norm = 0.0;
  if (a.l2) {
    for (std::int64_t j = 0; j < d; ++j) g_norm += static_cast<double>(g[j]) * g[j];
    g_norm = std::sqrt(g_norm);
  }
  // v = x + η∇ with ∇ the sign (L∞) or g/‖g‖₂ (L2); a zero gradient gives no step.
  const auto ascent = [&](std::int64_t j) {
    const double dir = a.l2 ? (g_norm > 0 ? g[j] / g_norm : 0.0) : (g[j] > 0 ? 1.0 : (g[j] < 0 ? -1.0 : 0.0));
    return x[j] + eta * dir;
  };
  if (!a.l2) {
    for (std::int64_t j = 0; j < d; ++j) {
      const float z = apgd_linf_project(ascent(j), x0[j], eps);
      const float next = a.momentum ? apgd_linf_project(apgd_momentum_point(x[j], z, x_prev[j]), x0[j], eps) : z;
      x_prev[j] = x[j];
      x[j] = next;
    }
    return;
  }
  const double s1 = l2_projection_scale(ascent, x0, eps, d);
  const auto first = [&](std::int64_t j) { return static_cast<float>(apgd_l2_point(ascent(j), x0[j], s1)); };
  if (!a.momentum) {
    for (std::int64_t j = 0; j < d; ++j) {
      const float z = first(j);
      x_prev[j] = x[j];
      x[j] = z;
    }
    return;
  }
  const auto momentum = [&](std::int64_t j) { return apgd_momentum_point(x[j], first(j), x_prev[j]); };
  const double s2 = l2_projection_scale(momentum, x0, eps, d);
  for (std::int64_t j = 0; j < d; ++j) {
    const float z = static_cast<float>(apgd_l2_point(momentum(j), x0[j], s2));
    x_prev[j] = x[j];
    x[j] = z;
  }
}
}  // namespace

void cw_start(const float* x0, double* w, double* m1, double* m2, float* x_out, double* l2_sq, std::int64_t n,
              std::int64_t d) {
#pragma omp parallel for schedule(static) if (n * d > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = i * d; j < (i + 1) * d; ++j) {
      w[j] = cw_start_w(x0[j]);
      m1[j] = 0.0;
      m2[j] = 0.0;
      x_out[j] = cw_iterate(w[j]);
    }
    l2_sq[i] = sq_distance(x_out + i * d, x0 + i * d, d);
  }
}

void cw_adam_step(const CwAdamArgs& a, const std::int32_t* example_rows, const std::int32_t* batch_rows, double* w,
                  double* m1, double* m2, const float* x0, const float* x_batch, const float* grad, float* x_next,
                  double* l2_sq) {
  const std::int64_t d = a.d;
#pragma omp parallel for schedule(static) if (a.count * d > kParallelMin)
  for (std::int64_t j = 0; j < a.count; ++j) {
    const std::int64_t e = static_cast<std::int64_t>(example_rows[j]) * d;
    const std::int64_t b = static_cast<std::int64_t>(batch_rows[j]) * d;
    float* out = x_next + j * d;
    for (std::int64_t q = 0; q < d; ++q)
      out[q] = cw_adam_element(a.lr, a.corr1, a.corr2, w[e + q], m1[e + q], m2[e + q], x_batch[b + q], x0[e + q],
                               grad[b + q]);
    l2_sq[j] = sq_distance(out, x0 + e, d);
  }
}

void apgd_step(const ApgdStepArgs& a, const std::int32_t* state_rows, const std::int32_t* grad_rows, float* x,
               float* x_prev, const float* x0, const float* grad, const double* eta, const float* eps) {
  const std::int64_t d = a.d;
#pragma omp parallel for schedule(dynamic) if (a.count * d > kParallelMin / 8)
  for (std::int64_t j = 0; j < a.count; ++j) {
    const std::int64_t r = state_rows[j];
    apgd_row(a, x + r * d, x_prev + r * d, x0 + r * d, grad + static_cast<std::int64_t>(grad_rows[j]) * d, eta[r],
             eps[r]);
  }
}

}  // namespace aegis::kernels::cpu
