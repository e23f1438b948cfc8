// Linear classification problems whose minimal adversarial distances are known exactly, for the
// attack suites: z = W·x + b, and an example of class y first changes its prediction at the L∞
// distance min_{j≠y} (z_y − z_j)/‖w_y − w_j‖₁ (L2: ‖·‖₂) when the box [0, 1] does not bind.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "nn/layers.h"
#include "runtime/tensor.h"

namespace aegis::testing {

// A K-class linear problem: Flatten + Linear(d, K) with random W, biases centring the logits at
// x = 0.5 plus `offset`, and examples in [0.3, 0.7]^d (shape [N, 1, 4, 6]) labelled with the
// model's prediction, with every margin ≥ 0.02 and minimal L2 distance ≤ 0.25, so 1.05× of it
// keeps x ± δ inside [0, 1]: the box never binds. The examples are the first such ones among
// pool_factor·N random candidates.
struct LinearProblem {
  std::shared_ptr<nn::Sequential> model;
  std::vector<float> w, b;  // [K, d], [K]
  std::int64_t k = 0, d = 24;
  Tensor x, labels;
  std::vector<double> dist_linf, dist_l2;
};

// With `far_last`, the last class has zero weights and bias offset − 10: it never wins nor
// competes, but it is there for DLR's z_π3 (a loss that needs three classes).
LinearProblem linear_problem(std::int64_t k, std::int64_t n, float offset = 0.0f, std::uint64_t seed = 301,
                             bool far_last = false, std::int64_t pool_factor = 60);

// dist[i]·factor as an f32 [N] tensor (per-example radii).
Tensor scaled(const std::vector<double>& dist, double factor);

}  // namespace aegis::testing
