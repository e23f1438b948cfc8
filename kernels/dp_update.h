// Fused DP-SGD noise-and-update over one flat float32 parameter buffer of n elements (Abadi et
// al. 2016, Alg. 1, lines "add noise" and "descent"): each element reads the clipped gradient sum
// s_i (Σ over the batch of the per-example gradients clipped to L2 norm C), an optional extra
// gradient c_i (an auditing canary), draws z_i ~ N(0, 1), forms the noisy gradient
//   g̃_i = (s_i + c_i + σC · z_i) / (q·N)
// and applies the optimizer step (kernels/optim_math.h) in the same pass. q·N is the EXPECTED
// batch size of Poisson sampling, never the realized one: the realized size depends on the data
// and dividing by it would release it without noise.
//
// z_i = philox::normal(key, offset + i) with key = (seed, kPurposeDpNoise, step): the caller gives
// every parameter its own range [offset, offset + n) of element indices and every training step
// its own `step`, so no two elements of one step and no two steps share a draw. Element i is a pure
// function of (key, offset + i), so the CPU and the CUDA kernel draw the same z up to the double
// transcendental functions' rounding (core/philox.h: a rare element differs by one float ulp
// after rounding). The noise term is
// float(σC · z) with the product in double — the same value kernels::cpu::fill_normal(…, 0, σC)
// produces — so "fill noise, add, divide, plain optimizer" reproduces the fused result exactly.
//
// CUDA: one thread per element in a grid-stride loop, 256 threads per block (purely elementwise,
// no shared memory); the Box–Muller transform runs in double on both backends.
#pragma once

#include <cstdint>

#include "kernels/optim.h"
#include "core/config.h"
#include "core/philox.h"

namespace aegis::kernels {

struct DpNoise {
  philox::Key key;                   // (seed, kPurposeDpNoise, training step)
  std::uint64_t offset = 0;          // index of this buffer's first element in the step's draw
  float noise_std = 0.0f;            // σ·C, the standard deviation of the noise on the sum
  float expected_batch_size = 1.0f;  // q·N > 0
};

// g̃ for element i (canary 0 when there is none).
AEGIS_HD float dp_noisy_gradient(const DpNoise& d, float clipped_sum, float canary, std::uint64_t i) {
  const float noise = static_cast<float>(static_cast<double>(d.noise_std) * philox::normal_double(d.key, d.offset + i));
  return (clipped_sum + canary + noise) / d.expected_batch_size;
}

// canary and noisy_grad_out may be null. noisy_grad_out, when given, receives g̃ (for auditing:
// it is exactly what the optimizer consumed). momentum_buf may be null when u.momentum == 0.
namespace cpu {
// out_i = g̃_i only (no optimizer): the Tensor-level noise API of privacy/noise.h.
void dp_noisy_gradient_fill(const DpNoise& d, const float* clipped_sum, const float* canary, float* out,
                            std::int64_t n);
void dp_sgd_step(const DpNoise& d, const SgdUpdate& u, float* param, const float* clipped_sum, const float* canary,
                 float* momentum_buf, float* noisy_grad_out, std::int64_t n);
void dp_adam_step(const DpNoise& d, const AdamUpdate& u, float* param, const float* clipped_sum, const float* canary,
                  float* exp_avg, float* exp_avg_sq, float* noisy_grad_out, std::int64_t n);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void dp_noisy_gradient_fill(const DpNoise& d, const float* d_clipped_sum, const float* d_canary, float* d_out,
                            std::int64_t n);
void dp_sgd_step(const DpNoise& d, const SgdUpdate& u, float* d_param, const float* d_clipped_sum,
                 const float* d_canary, float* d_momentum_buf, float* d_noisy_grad_out, std::int64_t n);
void dp_adam_step(const DpNoise& d, const AdamUpdate& u, float* d_param, const float* d_clipped_sum,
                  const float* d_canary, float* d_exp_avg, float* d_exp_avg_sq, float* d_noisy_grad_out,
                  std::int64_t n);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
