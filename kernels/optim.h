// Fused optimizer updates over one flat float32 parameter buffer of n elements: each call reads
// the parameter, its gradient and the optimizer state once and writes the parameter and state
// once, so a step costs one pass over memory per parameter tensor. The equations are exactly
// those of torch.optim.SGD (dampening 0) and torch.optim.Adam / AdamW (amsgrad off); scalars
// that depend on the step count only (bias corrections) are computed on the host in double and
// passed in. The gradient is never written. CUDA: one thread per element in a grid-stride loop
// (the update is purely elementwise, so no reductions and no shared memory).
#pragma once

#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

// torch.optim.SGD with dampening = 0, for step t = 1, 2, ...:
//   g   = grad + weight_decay · p                       (L2 penalty folded into the gradient)
//   if momentum ≠ 0:
//     buf = g                          at t = 1  (PyTorch starts the buffer at the gradient, not 0)
//     buf = momentum · buf + g         at t > 1
//     g   = g + momentum · buf         if nesterov
//     g   = buf                        otherwise
//   p   = p − lr · g
// With dampening 0 starting the buffer at g equals starting it at 0 and applying the t > 1 rule;
// it differs from the EMA convention buf = μ·buf + (1 − μ)·g that some libraries use.
struct SgdUpdate {
  float lr = 0.0f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool first_step = false;  // t = 1: the momentum buffer is overwritten, not read
};

// torch.optim.Adam (decoupled = false) and torch.optim.AdamW (decoupled = true), step t ≥ 1:
//   p   = p · (1 − lr · weight_decay)       if decoupled  (AdamW, Loshchilov & Hutter 2019, Alg. 2)
//   g   = grad + weight_decay · p           if not decoupled (Adam's L2 penalty)
//   m   = β1 · m + (1 − β1) · g
//   v   = β2 · v + (1 − β2) · g²
//   p   = p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// i.e. Kingma & Ba 2015, Alg. 1 with eps added outside the square root of the bias-corrected v̂,
// which is where PyTorch adds it. step_size = lr / (1 − β1^t) and
// bias_correction2_sqrt = sqrt(1 − β2^t) are the two host-computed scalars.
struct AdamUpdate {
  float lr = 0.0f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  bool decoupled = false;
  float step_size = 0.0f;              // lr / (1 − β1^t)
  float bias_correction2_sqrt = 1.0f;  // sqrt(1 − β2^t)
};

namespace cpu {
// momentum_buf may be null when u.momentum == 0 (plain SGD keeps no state).
void sgd_step(const SgdUpdate& u, float* param, const float* grad, float* momentum_buf, std::int64_t n);
void adam_step(const AdamUpdate& u, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               std::int64_t n);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void sgd_step(const SgdUpdate& u, float* d_param, const float* d_grad, float* d_momentum_buf, std::int64_t n);
void adam_step(const AdamUpdate& u, float* d_param, const float* d_grad, float* d_exp_avg, float* d_exp_avg_sq,
               std::int64_t n);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
