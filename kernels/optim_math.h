// The per-element optimizer update formulas of kernels/optim.h, written once as host+device
// inline functions so that every kernel that updates a parameter — the plain SGD/Adam kernels
// (kernels/{cpu,cuda}/optim.*) and the fused DP noise-and-update kernels (kernels/dp_update.h) —
// runs the same float expressions in the same order. That is what makes "noise, then the plain
// optimizer" and the fused DP kernel agree bit for bit on the same backend.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/optim.h"
#include "core/philox.h"

namespace aegis::kernels {

// SGD without momentum: p − lr·(g + wd·p).
AEGIS_HD float sgd_plain_update(float lr, float weight_decay, float param, float grad) {
  return param - lr * (grad + weight_decay * param);
}

// SGD with momentum (torch.optim.SGD, dampening 0): updates the parameter and its buffer.
AEGIS_HD void sgd_momentum_update(const SgdUpdate& u, float grad, float& param, float& momentum_buf) {
  const float g = grad + u.weight_decay * param;
  const float buf = u.first_step ? g : u.momentum * momentum_buf + g;
  momentum_buf = buf;
  param -= u.lr * (u.nesterov ? g + u.momentum * buf : buf);
}

// One SGD element, with or without momentum (momentum_buf is not touched when momentum == 0).
AEGIS_HD void sgd_update(const SgdUpdate& u, float grad, float& param, float* momentum_buf) {
  if (u.momentum == 0.0f) {
    param = sgd_plain_update(u.lr, u.weight_decay, param, grad);
  } else {
    sgd_momentum_update(u, grad, param, *momentum_buf);
  }
}

// Adam / AdamW (torch.optim.Adam, AdamW; amsgrad off): updates the parameter and both moments.
// Decoupled decay shrinks p before the Adam step; L2 decay adds wd·p to the gradient instead.
AEGIS_HD void adam_update(const AdamUpdate& u, float grad, float& param, float& exp_avg, float& exp_avg_sq) {
  const float shrink = u.decoupled ? 1.0f - u.lr * u.weight_decay : 1.0f;
  const float l2 = u.decoupled ? 0.0f : u.weight_decay;
  const float p = param;
  const float g = grad + l2 * p;
  const float m = u.beta1 * exp_avg + (1.0f - u.beta1) * g;
  const float v = u.beta2 * exp_avg_sq + (1.0f - u.beta2) * g * g;
  exp_avg = m;
  exp_avg_sq = v;
  // sqrtf and IEEE division (no fast-math) are correctly rounded on both backends.
  param = p * shrink - u.step_size * m / (sqrtf(v) / u.bias_correction2_sqrt + u.eps);
}

// The host-side Adam scalars for step t ≥ 1 (per-parameter count, as in PyTorch). The bias
// corrections are computed in double: 1 − β2^t is ~1e-3 at t = 1 for β2 = 0.999, where float
// powers of a number near 1 would lose digits.
inline AdamUpdate adam_update_for_step(float lr, float beta1, float beta2, float eps, float weight_decay,
                                       bool decoupled, std::int64_t t) {
  AdamUpdate u;
  u.lr = lr;
  u.beta1 = beta1;
  u.beta2 = beta2;
  u.eps = eps;
  u.weight_decay = weight_decay;
  u.decoupled = decoupled;
  const double t_d = static_cast<double>(t);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(beta1), t_d);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(beta2), t_d);
  u.step_size = static_cast<float>(static_cast<double>(lr) / bias_correction1);
  u.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  return u;
}

}  // namespace aegis::kernels
