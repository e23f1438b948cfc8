// The optimization-attack family: the fused per-iteration updates of CW-L2 and APGD on a batch of
// examples with d elements each. Every [·, d] buffer is row-major; a call works on `count` rows
// named by index lists, so an example that stopped early is skipped without compacting the state.
//   CW-L2 (Carlini & Wagner 2017, §V) keeps w, the Adam moments m1, m2 (f64, indexed by example)
//   and writes the iterate x' = clip[0,1]((tanh(w)/s + 1)/2), s = 1 − 10⁻⁶, into a compact batch
//   buffer for the next forward pass. One Adam step (Kingma & Ba 2015, Alg. 1) of the objective
//   ‖x' − x0‖₂² + c·f(x'), whose input gradient g = ∇ₓ c·f comes from the model:
//     gx = 2(x' − x0) + g,   gw = gx·(1 − tanh²w)/(2s),
//     m1 ← β1·m1 + (1 − β1)·gw,   m2 ← β2·m2 + (1 − β2)·gw²,
//     w ← w − lr·(m1/(1 − β1ᵗ)) / (√(m2/(1 − β2ᵗ)) + ε̂),   β1 = 0.9, β2 = 0.999, ε̂ = 10⁻⁸,
//   then the new x' and the row's ‖x' − x0‖₂² (the float x' against x0, in double).
//   APGD (Croce & Hein 2020, Alg. 1) keeps the iterate x and the previous iterate x_prev (f32,
//   indexed by example) and takes the gradient from a compact batch: with ∇ the gradient's sign
//   (L∞) or the gradient over its L2 norm (L2), zero for a zero gradient,
//     z = P(x + η∇),   and for step > 0   z ← P(x + α(z − x) + (1 − α)(x − x_prev)),  α = 0.75,
//   then x_prev ← x, x ← z. P is the projection onto the ε-ball around x0 intersected with the box
//   [0, 1]: L∞ clips per element with exact float bounds (round_into); L2 is the exact Euclidean
//   projection y(s) = clip[0,1](x0 + s(v − x0)) with the largest s ∈ [0, 1] for which
//   ‖y(s) − x0‖₂ ≤ l2_target_radius(ε, d) (the norm grows with s), found by 60 bisection steps.
// CPU: OpenMP over rows, sums in double, in the element order of a plain loop. CUDA: one 256-thread
// block per row, a block-stride loop over its d elements and block reductions in double (one per
// bisection step); every value an element needs is recomputed from the inputs in each pass, so
// no scratch memory is used.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/attack_step.h"
#include "core/config.h"
#include "core/philox.h"

namespace aegis::kernels {

constexpr double kCwTanhScale = 1.0 - 1e-6;  // s: keeps atanh((2x − 1)·s) finite for x ∈ {0, 1}
constexpr double kAdamBeta1 = 0.9, kAdamBeta2 = 0.999, kAdamEpsilon = 1e-8;
constexpr double kApgdMomentum = 0.75;  // α (Croce & Hein 2020, §3.2)
constexpr int kApgdBisectionSteps = 60;

AEGIS_HD double clamp_unit(double v) {
  return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
}

// x' of one coordinate of w: (tanh(w)/s + 1)/2 clipped to [0, 1] against the float excess.
AEGIS_HD float cw_iterate(double w) {
  return static_cast<float>(clamp_unit((tanh(w) / kCwTanhScale + 1.0) / 2.0));
}

// w of one coordinate of the clean input (the inverse of cw_iterate up to the factor s).
AEGIS_HD double cw_start_w(float x0) {
  return atanh((2.0 * x0 - 1.0) * kCwTanhScale);
}

// One Adam step on one coordinate (the formula above); returns the new x'.
AEGIS_HD float cw_adam_element(double lr, double corr1, double corr2, double& w, double& m1, double& m2, float x,
                               float x0, float g) {
  const double th = tanh(w);
  // ∂/∂x' of ‖x' − x0‖² + c·f, times ∂x'/∂w = (1 − tanh²w)/(2s).
  const double gx = 2.0 * (static_cast<double>(x) - x0) + g;
  const double gw = gx * (1.0 - th * th) / (2.0 * kCwTanhScale);
  m1 = kAdamBeta1 * m1 + (1.0 - kAdamBeta1) * gw;
  m2 = kAdamBeta2 * m2 + (1.0 - kAdamBeta2) * gw * gw;
  w -= lr * (m1 / corr1) / (sqrt(m2 / corr2) + kAdamEpsilon);
  return cw_iterate(w);
}

// The L∞ projection of one coordinate v onto [x0 − ε, x0 + ε] ∩ [0, 1], as a float inside it.
AEGIS_HD float apgd_linf_project(double v, float x0, double eps) {
  const double lo = x0 - eps > 0.0 ? x0 - eps : 0.0;
  const double hi = x0 + eps < 1.0 ? x0 + eps : 1.0;
  return round_into(v < lo ? lo : (v > hi ? hi : v), lo, hi);
}

// y(s) of one coordinate for the L2 projection: clip[0,1](x0 + s(v − x0)).
AEGIS_HD double apgd_l2_point(double v, float x0, double s) {
  return clamp_unit(x0 + s * (v - x0));
}

// The momentum point of one coordinate: x + α(z − x) + (1 − α)(x − x_prev).
AEGIS_HD double apgd_momentum_point(float x, float z, float x_prev) {
  return x + kApgdMomentum * (z - static_cast<double>(x)) + (1.0 - kApgdMomentum) * (x - static_cast<double>(x_prev));
}

struct CwAdamArgs {
  std::int64_t count = 0;  // rows stepped
  std::int64_t d = 0;      // elements per example
  double lr = 0.0;         // Adam step size
  double corr1 = 1.0;      // 1 − β1ᵗ for this step t ≥ 1
  double corr2 = 1.0;      // 1 − β2ᵗ
};

struct ApgdStepArgs {
  bool l2 = false;         // L2 ball (else L∞)
  bool momentum = false;   // step > 0: the second, momentum projection follows
  std::int64_t count = 0;  // rows stepped
  std::int64_t d = 0;      // elements per example
};

namespace cpu {
// A fresh start for n examples: w = atanh((2·x0 − 1)·s), m1 = m2 = 0, x_out = x'(w) (all [n, d],
// row i is example i) and l2_sq[i] = ‖x_out_i − x0_i‖₂².
void cw_start(const float* x0, double* w, double* m1, double* m2, float* x_out, double* l2_sq, std::int64_t n,
              std::int64_t d);
// One Adam step for rows j < count: example e = example_rows[j] (rows of w, m1, m2, x0) whose
// current iterate and input gradient are rows b = batch_rows[j] of x_batch and grad. Writes the
// new iterate to row j of x_next and its ‖x_next_j − x0_e‖₂² to l2_sq[j]. x_next must not overlap
// x_batch.
void cw_adam_step(const CwAdamArgs& args, const std::int32_t* example_rows, const std::int32_t* batch_rows, double* w,
                  double* m1, double* m2, const float* x0, const float* x_batch, const float* grad, float* x_next,
                  double* l2_sq);
// One APGD step for rows j < count: state row r = state_rows[j] of x, x_prev, x0, eta and eps,
// gradient row grad_rows[j] of grad. In place on x and x_prev.
void apgd_step(const ApgdStepArgs& args, const std::int32_t* state_rows, const std::int32_t* grad_rows, float* x,
               float* x_prev, const float* x0, const float* grad, const double* eta, const float* eps);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void cw_start(const float* d_x0, double* d_w, double* d_m1, double* d_m2, float* d_x_out, double* d_l2_sq,
              std::int64_t n, std::int64_t d);
void cw_adam_step(const CwAdamArgs& args, const std::int32_t* d_example_rows, const std::int32_t* d_batch_rows,
                  double* d_w, double* d_m1, double* d_m2, const float* d_x0, const float* d_x_batch,
                  const float* d_grad, float* d_x_next, double* d_l2_sq);
void apgd_step(const ApgdStepArgs& args, const std::int32_t* d_state_rows, const std::int32_t* d_grad_rows, float* d_x,
               float* d_x_prev, const float* d_x0, const float* d_grad, const double* d_eta, const float* d_eps);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
