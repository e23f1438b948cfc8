#include "kernels/loss.h"

#include <cmath>
#include <limits>

#include "kernels/cpu/row_max.h"

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 14;  // logits; below this a thread team costs more than it saves

// Σ_j exp(z_j − m) in double.
double sum_exp(const float* z, std::int64_t k, float m) {
  double s = 0.0;
  for (std::int64_t j = 0; j < k; ++j) s += std::exp(static_cast<double>(z[j]) - m);
  return s;
}

// A label outside [0, k) (rejected by the caller; this only keeps a stray one from reading out
// of bounds) yields NaN.
double logit_of_label(const float* z, std::int32_t label, std::int64_t k) {
  return label >= 0 && label < k ? z[label] : std::numeric_limits<double>::quiet_NaN();
}

// True when (v, at j > best_j) should replace the running maximum: a NaN beats any number,
// otherwise strictly greater wins, so the first of equal maxima is kept.
bool replaces(float v, float best) {
  if (std::isnan(best)) return false;
  return std::isnan(v) || v > best;
}

std::int32_t argmax_row(const float* z, std::int64_t k) {
  std::int64_t best = 0;
  for (std::int64_t j = 1; j < k; ++j)
    if (replaces(z[j], z[best])) best = j;
  return static_cast<std::int32_t>(best);
}
}  // namespace

void cross_entropy_forward(const float* logits, const std::int32_t* labels, float* losses, float* total,
                           float total_scale, std::int64_t n, std::int64_t k) {
#pragma omp parallel for schedule(static) if (n * k > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    const float* z = logits + i * k;
    const float m = row_max(z, k);
    // (m − z_y) before adding the log-sum: with logits near 1000 the sum m + log Σ would round
    // to the spacing of floats at 1000 (6e-5) before the subtraction.
    losses[i] = static_cast<float>(std::log(sum_exp(z, k, m)) + (m - logit_of_label(z, labels[i], k)));
  }
  if (total) {
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) s += losses[i];
    total[0] = static_cast<float>(s * total_scale);
  }
}

void cross_entropy_backward(const float* logits, const std::int32_t* labels, const float* grad, bool per_row_grad,
                            float scale, float* dlogits, std::int64_t n, std::int64_t k) {
#pragma omp parallel for schedule(static) if (n * k > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    const float* z = logits + i * k;
    const float m = row_max(z, k);
    const double inv_sum = 1.0 / sum_exp(z, k, m);
    const double g = static_cast<double>(scale) * (per_row_grad ? grad[i] : grad[0]);
    for (std::int64_t j = 0; j < k; ++j) {
      const double p = std::exp(static_cast<double>(z[j]) - m) * inv_sum;
      dlogits[i * k + j] = static_cast<float>((p - (j == labels[i] ? 1.0 : 0.0)) * g);
    }
  }
}

void argmax_rows(const float* logits, std::int32_t* out, std::int64_t n, std::int64_t k) {
#pragma omp parallel for schedule(static) if (n * k > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) out[i] = argmax_row(logits + i * k, k);
}

void count_correct(const float* logits, const std::int32_t* labels, std::int32_t* count, std::int64_t n,
                   std::int64_t k) {
  std::int64_t correct = 0;
#pragma omp parallel for reduction(+ : correct) schedule(static) if (n * k > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) correct += argmax_row(logits + i * k, k) == labels[i] ? 1 : 0;
  count[0] = static_cast<std::int32_t>(correct);
}

}  // namespace aegis::kernels::cpu
