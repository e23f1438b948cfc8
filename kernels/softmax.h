// Probability rows over float32 [rows, classes]: softmax and log-softmax with their gradients, the
// KL divergence and the entropy of a row, and the sum of groups of consecutive rows with its
// adjoint (the repetition of a row). Together they form the consistency regularizer of
// randomized-smoothing training (Jeong & Shin 2020; nn/functional/consistency.cpp).
//   softmax      y = exp(x − m) / Σ_j exp(x_j − m), m the row maximum;
//                dx = y ⊙ (g − Σ_j g_j y_j), from the saved output y.
//   log_softmax  y = x − m − log Σ_j exp(x_j − m);  dx = g − exp(y)·Σ_j g_j.
//   kl_div       out_r = Σ_j p_rj (log p_rj − logq_rj) = KL(p_r ‖ q_r), with q given as its log;
//                dp = g_r (log p + 1 − logq), dlogq = −g_r p.
//   entropy      out_r = −Σ_j p_rj log p_rj;  dp = −g_r (log p + 1).
//   group_sum    out[b] = scale · Σ_{k<G} x[b·G + k]   (rows b of [B, cols] from rows of [B·G, cols]);
//   repeat       out[b·G + k] = scale · x[b]           (its adjoint).
// KL and entropy take log p at max(p, 1e-20), so a probability that underflowed to 0 adds 0 (the
// clamp of Jeong & Shin's reference code). Outputs are caller-allocated buffers on the inputs'
// device; kernels never allocate. A null gradient output skips that gradient.
// CPU: one OpenMP iteration per row, row sums in double. CUDA: one warp per row (8 rows per
// 256-thread block), lanes striding over the classes and combining by warp shuffles, sums in float;
// group_sum and repeat: one thread per output element.
#pragma once

#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

// Below this the log of a probability is taken at this value (KL and entropy).
inline constexpr float kProbabilityFloor = 1e-20f;

namespace cpu {
void softmax_forward(const float* x, float* y, std::int64_t rows, std::int64_t cols);
void softmax_backward(const float* y, const float* gy, float* dx, std::int64_t rows, std::int64_t cols);
void log_softmax_forward(const float* x, float* y, std::int64_t rows, std::int64_t cols);
void log_softmax_backward(const float* y, const float* gy, float* dx, std::int64_t rows, std::int64_t cols);
void kl_div_forward(const float* p, const float* logq, float* out, std::int64_t rows, std::int64_t cols);
void kl_div_backward(const float* p, const float* logq, const float* g, float* dp, float* dlogq, std::int64_t rows,
                     std::int64_t cols);
void entropy_forward(const float* p, float* out, std::int64_t rows, std::int64_t cols);
void entropy_backward(const float* p, const float* g, float* dp, std::int64_t rows, std::int64_t cols);
void group_sum_rows(const float* x, float* out, float scale, std::int64_t groups, std::int64_t group,
                    std::int64_t cols);
void repeat_rows(const float* x, float* out, float scale, std::int64_t groups, std::int64_t group, std::int64_t cols);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void softmax_forward(const float* d_x, float* d_y, std::int64_t rows, std::int64_t cols);
void softmax_backward(const float* d_y, const float* d_gy, float* d_dx, std::int64_t rows, std::int64_t cols);
void log_softmax_forward(const float* d_x, float* d_y, std::int64_t rows, std::int64_t cols);
void log_softmax_backward(const float* d_y, const float* d_gy, float* d_dx, std::int64_t rows, std::int64_t cols);
void kl_div_forward(const float* d_p, const float* d_logq, float* d_out, std::int64_t rows, std::int64_t cols);
void kl_div_backward(const float* d_p, const float* d_logq, const float* d_g, float* d_dp, float* d_dlogq,
                     std::int64_t rows, std::int64_t cols);
void entropy_forward(const float* d_p, float* d_out, std::int64_t rows, std::int64_t cols);
void entropy_backward(const float* d_p, const float* d_g, float* d_dp, std::int64_t rows, std::int64_t cols);
void group_sum_rows(const float* d_x, float* d_out, float scale, std::int64_t groups, std::int64_t group,
                    std::int64_t cols);
void repeat_rows(const float* d_x, float* d_out, float scale, std::int64_t groups, std::int64_t group,
                 std::int64_t cols);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
