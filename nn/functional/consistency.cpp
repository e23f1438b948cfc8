// The consistency regularizer (nn/functional.h states the formula), composed of the probability-row
// ops of nn/functional/softmax.cpp:
//   log p_k = log_softmax(z_k), p̄ = group_mean(softmax(z), K),
//   KL(p̄ ‖ p_k) = kl_div(repeat_rows(p̄, K), log p_k), averaged over the K copies by a group mean,
//   H(p̄) = entropy(p̄).
// The gradient reaches p̄ through both terms, as in Jeong & Shin's reference form (the mean is not
// treated as a constant target). Every op is row-local or local to one group of K rows, so
// ∂R_b/∂z is zero outside example b's copies: a DP-SGD step that clips the sum of a group's row
// gradients clips exactly example b's regularized gradient.
#include <cmath>

#include "nn/functional.h"

namespace aegis::nn::F {

Var consistency_regularizer(const Var& logits, std::int64_t copies, float lambda, float eta) {
  const Tensor& z = logits.value();
  check_dim(z, 2, "consistency_regularizer logits");
  AEGIS_CHECK(copies >= 1, "consistency regularizer: copies per example " << copies << " must be at least 1");
  AEGIS_CHECK(std::isfinite(lambda) && lambda >= 0.0f,
              "consistency regularizer: lambda " << lambda << " must be non-negative and finite");
  AEGIS_CHECK(std::isfinite(eta) && eta >= 0.0f,
              "consistency regularizer: entropy weight eta " << eta << " must be non-negative and finite");
  const std::int64_t rows = z.size(0);
  AEGIS_CHECK_AS(
      ShapeError, rows % copies == 0,
      "consistency regularizer: " << rows << " rows of logits are not whole groups of " << copies << " copies");
  const std::int64_t examples = rows / copies;
  const Var p_mean = group_mean(softmax(logits), copies);
  Var total;
  if (lambda > 0.0f) {
    const Var kl = kl_div(repeat_rows(p_mean, copies), log_softmax(logits));  // [B·K]
    const Var kl_mean = reshape(group_mean(reshape(kl, {rows, 1}), copies), {examples});
    total = scale(kl_mean, lambda);
  }
  if (eta > 0.0f) {
    const Var h = scale(entropy(p_mean), eta);
    total = total.defined() ? add(total, h) : h;
  }
  if (!total.defined()) total = Var(Tensor::zeros({examples}, DType::F32, z.device()));
  return total;
}

}  // namespace aegis::nn::F
