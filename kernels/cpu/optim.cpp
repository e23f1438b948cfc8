// CPU backend of the fused optimizer updates (equations in kernels/optim.h): one loop over the
// buffer reading param, grad and state once, split across OpenMP threads above 2^15 elements.
#include "kernels/optim.h"

#include <cmath>

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 15;  // below this a thread team costs more than it saves
}

void sgd_step(const SgdUpdate& u, float* param, const float* grad, float* momentum_buf, std::int64_t n) {
  const float lr = u.lr, mu = u.momentum, wd = u.weight_decay;
  if (mu == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (std::int64_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + wd * param[i]);
    return;
  }
  const bool nesterov = u.nesterov, first = u.first_step;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + wd * param[i];
    const float buf = first ? g : mu * momentum_buf[i] + g;
    momentum_buf[i] = buf;
    param[i] -= lr * (nesterov ? g + mu * buf : buf);
  }
}

void adam_step(const AdamUpdate& u, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               std::int64_t n) {
  const float b1 = u.beta1, b2 = u.beta2, eps = u.eps;
  const float step_size = u.step_size, bc2_sqrt = u.bias_correction2_sqrt;
  // Decoupled decay shrinks p before the Adam step; L2 decay adds wd·p to the gradient instead.
  const float shrink = u.decoupled ? 1.0f - u.lr * u.weight_decay : 1.0f;
  const float l2 = u.decoupled ? 0.0f : u.weight_decay;
  // sqrt and a division per element: threads pay off at a quarter of the size of a plain axpy.
#pragma omp parallel for schedule(static) if (n > kParallelMin / 4)
  for (std::int64_t i = 0; i < n; ++i) {
    const float p = param[i];
    const float g = grad[i] + l2 * p;
    const float m = b1 * exp_avg[i] + (1.0f - b1) * g;
    const float v = b2 * exp_avg_sq[i] + (1.0f - b2) * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = p * shrink - step_size * m / (std::sqrt(v) / bc2_sqrt + eps);
  }
}

}  // namespace aegis::kernels::cpu
