// CPU backend of the fused DP noise-and-update (kernels/dp_update.h): one loop over the buffer
// that draws the Philox normal, forms the noisy gradient and applies the shared optimizer formula
// (kernels/optim_math.h), split across OpenMP threads. A Philox-4x32-10 call plus a double log and
// sin/cos cost ~50 ns per element, so threads pay off from a few thousand elements.
#include "kernels/dp_update.h"

#include "kernels/optim_math.h"

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 12;
}

void dp_noisy_gradient_fill(const DpNoise& d, const float* clipped_sum, const float* canary, float* out,
                            std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = dp_noisy_gradient(d, clipped_sum[i], canary ? canary[i] : 0.0f, static_cast<std::uint64_t>(i));
}

void dp_sgd_step(const DpNoise& d, const SgdUpdate& u, float* param, const float* clipped_sum, const float* canary,
                 float* momentum_buf, float* noisy_grad_out, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = dp_noisy_gradient(d, clipped_sum[i], canary ? canary[i] : 0.0f, static_cast<std::uint64_t>(i));
    if (noisy_grad_out) noisy_grad_out[i] = g;
    sgd_update(u, g, param[i], momentum_buf ? momentum_buf + i : nullptr);
  }
}

void dp_adam_step(const DpNoise& d, const AdamUpdate& u, float* param, const float* clipped_sum, const float* canary,
                  float* exp_avg, float* exp_avg_sq, float* noisy_grad_out, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = dp_noisy_gradient(d, clipped_sum[i], canary ? canary[i] : 0.0f, static_cast<std::uint64_t>(i));
    if (noisy_grad_out) noisy_grad_out[i] = g;
    adam_update(u, g, param[i], exp_avg[i], exp_avg_sq[i]);
  }
}

}  // namespace aegis::kernels::cpu
