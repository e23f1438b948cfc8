// The attack-step family: the fused per-iteration update of gradient attacks on a batch of n
// examples with d elements each, every example a row of a [n, d] float32 buffer (x the current
// iterate, x0 the clean input, grad = ∇ₓ of the objective being maximized, momentum the MI-FGSM
// accumulator), with per-example radius eps[n] and step size alpha[n]. One call per iteration
// forms the step, projects onto the ε-ball around x0 and clips to the box [0, 1]:
//   Linf      x ← clip[0,1] clip[x0−ε, x0+ε] (x + α·sign ∇)        (Madry et al. 2018, §2.1)
//   L2        δ = x + α·∇/‖∇‖₂ − x0,  x ← clip[0,1](x0 + δ·min(1, ε/‖δ‖₂))
//   momentum  g ← μ·g + ∇/‖∇‖₁ per example (Dong et al. 2018, Alg. 1), then the Linf step with
//             sign g or the L2 step with g/‖g‖₂ (Dong et al. 2018, §3.1).
// A zero gradient (or accumulator) gives a zero step. Clipping to the box after the ball keeps
// the ball: x0 lies in the box, so the clip only moves coordinates towards x0. The results obey
// ‖x − x0‖ ≤ ε exactly for the float values: the Linf bounds are enforced after rounding to float,
// and the L2 ball is projected onto the radius l2_target_radius(ε, d) = ε − (√d·2⁻²⁴ + ε·2⁻²²),
// which leaves room for the d roundings (each ≤ 2⁻²⁵ below 1) to float.
// The family also holds the rest of an attack's device work: random starts (uniform in the L∞
// box; uniform in the L2 ball as direction z/‖z‖ with z Gaussian times radius ε·U^{1/d}, Muller
// 1959), keyed by Philox (seed, kPurposeAttackStart, restart) with element index
// example_id·d + j and, for the radius, kRadiusIndexBase + example_id — example_id being the
// example's position in the caller's batch, so a start does not depend on which other examples
// are still being attacked and CPU and CUDA draw the same numbers; an indexed row copy (gather
// of the examples still attacked, scatter of improved iterates into the best-so-far); and the
// per-example perturbation norm ‖x − x0‖ (L∞ or L2).
// CPU: OpenMP over examples, sums in double. CUDA: the Linf sign step, the Linf start and the
// row copy are one thread per element (grid-stride); everything with a per-example norm runs
// one 256-thread block per example, a block-stride loop over its d elements and a block
// reduction (warp shuffles, then one warp over the per-warp partials) in double.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/config.h"
#include "core/norm.h"
#include "core/philox.h"

namespace aegis::kernels {

// The ball of an attack step: aegis::Norm (Linf or L2).
using AttackNorm = ::aegis::Norm;

struct AttackStepArgs {
  AttackNorm norm = AttackNorm::Linf;
  bool momentum = false;  // MI-FGSM: the step follows the accumulator, which is updated first
  float decay = 1.0f;     // μ, the accumulator's decay factor
  std::int64_t n = 0;     // examples (rows)
  std::int64_t d = 0;     // elements per example
};

// Start of the Philox index range holding one uniform per example (the L2 start's radius); far
// above any element index example_id·d + j.
constexpr std::uint64_t kRadiusIndexBase = std::uint64_t{1} << 62;

// The radius the L2 ball is projected onto (see above); never negative.
AEGIS_HD double l2_target_radius(double eps, std::int64_t d) {
  const double slack = sqrt(static_cast<double>(d)) * (1.0 / 16777216.0) + eps * (1.0 / 4194304.0);
  return eps > slack ? eps - slack : 0.0;
}

// Rounds v (which lies in [lo, hi], lo and hi in double) to a float inside [lo, hi]: the
// nearest float can fall half an ulp outside, then it moves one ulp in. [lo, hi] always holds
// the float x0, so the interval contains a float.
AEGIS_HD float round_into(double v, double lo, double hi) {
  float f = static_cast<float>(v);
  if (f > hi) f = nextafterf(f, -INFINITY);
  if (f < lo) f = nextafterf(f, INFINITY);
  return f;
}

// Free adversarial training (Shafahi et al. 2019, Alg. 1), elementwise over n floats: the input of
// a replay x_adv = clip[0,1](x + δ), and after its backward pass δ ← clip[−ε,ε](δ + ε·sign g).
AEGIS_HD float free_input_element(float x, float delta) {
  const float v = x + delta;
  return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}
AEGIS_HD float free_delta_element(float delta, float grad, float eps) {
  const float step = grad > 0.0f ? eps : (grad < 0.0f ? -eps : 0.0f);  // ε·sign g, exact
  const float v = delta + step;
  return v < -eps ? -eps : (v > eps ? eps : v);
}

namespace cpu {
// x_adv[i] = free_input_element(x[i], delta[i]); delta[i] = free_delta_element(delta[i], grad[i], ε).
void free_input(const float* x, const float* delta, float* x_adv, std::int64_t n);
void free_update(float* delta, const float* grad, float eps, std::int64_t n);
// One attack iteration, in place on x (and momentum when args.momentum; otherwise momentum may
// be null). eps and alpha are per example.
void attack_step(const AttackStepArgs& args, float* x, const float* x0, const float* grad, float* momentum,
                 const float* eps, const float* alpha);
// x = clip[0,1](x0 + δ) with δ uniform in the ε-ball of `norm`, drawn as described above.
void attack_random_start(AttackNorm norm, float* x, const float* x0, const float* eps, const std::int32_t* example_ids,
                         std::int64_t n, std::int64_t d, const philox::Key& key);
// dst[dst_rows[j], :] = src[src_rows[j], :] for j < count; rows of d floats. dst and src must not
// overlap.
void copy_rows(const float* src, const std::int32_t* src_rows, float* dst, const std::int32_t* dst_rows,
               std::int64_t count, std::int64_t d);
// out[i] = ‖x_i − x0_i‖ (max |·| for Linf, √Σ(·)² for L2), computed in double.
void perturbation_norms(AttackNorm norm, const float* x, const float* x0, float* out, std::int64_t n, std::int64_t d);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void free_input(const float* d_x, const float* d_delta, float* d_x_adv, std::int64_t n);
void free_update(float* d_delta, const float* d_grad, float eps, std::int64_t n);
void attack_step(const AttackStepArgs& args, float* d_x, const float* d_x0, const float* d_grad, float* d_momentum,
                 const float* d_eps, const float* d_alpha);
void attack_random_start(AttackNorm norm, float* d_x, const float* d_x0, const float* d_eps,
                         const std::int32_t* d_example_ids, std::int64_t n, std::int64_t d, const philox::Key& key);
void copy_rows(const float* d_src, const std::int32_t* d_src_rows, float* d_dst, const std::int32_t* d_dst_rows,
               std::int64_t count, std::int64_t d);
void perturbation_norms(AttackNorm norm, const float* d_x, const float* d_x0, float* d_out, std::int64_t n,
                        std::int64_t d);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
