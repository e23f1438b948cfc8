// Classification heads over float32 logits [n, k] with int32 labels [n] (already checked to lie
// in [0, k) by the caller): the fused softmax cross-entropy, its gradient, the row argmax and the
// count of rows whose argmax equals the label. Cross-entropy per row is
// loss_i = log Σ_j exp(z_ij − m_i) + (m_i − z_i,y_i), m_i = max_j z_ij, so no exponential
// overflows however large the logits; its gradient is (softmax(z_i) − onehot(y_i))·scale·g_i,
// recomputed from the logits rather than saved. Argmax returns the first maximal index; a NaN
// counts as larger than every number (as in torch.argmax). Outputs are caller-allocated buffers
// on the same device; kernels never allocate.
// CPU: one OpenMP iteration per row, row sums in double. CUDA: one warp per row (8 rows per
// 256-thread block), lanes striding over the k classes and combining by warp shuffles; the
// Mean/Sum total is a second launch of a single block summing the per-row losses in a fixed
// order (deterministic), and count_correct adds one integer atomic per block.
#pragma once

#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

namespace cpu {
// losses[n] = per-row cross-entropy; when total is non-null, total[0] = total_scale · Σ losses
// (0 for n = 0).
void cross_entropy_forward(const float* logits, const std::int32_t* labels, float* losses, float* total,
                           float total_scale, std::int64_t n, std::int64_t k);
// dlogits[n, k] = (softmax − onehot) · scale · (per_row_grad ? grad[i] : grad[0]).
void cross_entropy_backward(const float* logits, const std::int32_t* labels, const float* grad, bool per_row_grad,
                            float scale, float* dlogits, std::int64_t n, std::int64_t k);
void argmax_rows(const float* logits, std::int32_t* out, std::int64_t n, std::int64_t k);
// count[0] = #{i : argmax(logits_i) == labels[i]}; requires n < 2^31.
void count_correct(const float* logits, const std::int32_t* labels, std::int32_t* count, std::int64_t n,
                   std::int64_t k);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void cross_entropy_forward(const float* d_logits, const std::int32_t* d_labels, float* d_losses, float* d_total,
                           float total_scale, std::int64_t n, std::int64_t k);
void cross_entropy_backward(const float* d_logits, const std::int32_t* d_labels, const float* d_grad, bool per_row_grad,
                            float scale, float* d_dlogits, std::int64_t n, std::int64_t k);
void argmax_rows(const float* d_logits, std::int32_t* d_out, std::int64_t n, std::int64_t k);
void count_correct(const float* d_logits, const std::int32_t* d_labels, std::int32_t* d_count, std::int64_t n,
                   std::int64_t k);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
