// CPU backend of the fused optimizer updates (equations in kernels/optim.h, per-element formulas
// in kernels/optim_math.h): one loop over the buffer reading param, grad and state once, split
// across OpenMP threads above 2^15 elements.
#include "kernels/optim.h"

#include "kernels/optim_math.h"

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 15;  // below this a thread team costs more than it saves
}

void sgd_step(const SgdUpdate& u, float* param, const float* grad, float* momentum_buf, std::int64_t n) {
  if (u.momentum == 0.0f) {
    const float lr = u.lr, wd = u.weight_decay;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (std::int64_t i = 0; i < n; ++i) param[i] = sgd_plain_update(lr, wd, param[i], grad[i]);
    return;
  }
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) sgd_momentum_update(u, grad[i], param[i], momentum_buf[i]);
}

void adam_step(const AdamUpdate& u, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               std::int64_t n) {
  // sqrt and a division per element: threads pay off at a quarter of the size of a plain axpy.
#pragma omp parallel for schedule(static) if (n > kParallelMin / 4)
  for (std::int64_t i = 0; i < n; ++i) adam_update(u, grad[i], param[i], exp_avg[i], exp_avg_sq[i]);
}

}  // namespace aegis::kernels::cpu
