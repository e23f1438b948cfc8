// Per-example gradient norms and the pieces of clipped gradient sums for DP-SGD (Abadi et al.
// 2016, Alg. 1), computed from what a layer captured in the one backward pass: its input
// activation a and its output gradient g, batch first. Every *_sq_norms op ADDS each example's
// squared norm into sq_norms[n], so all layers of a model accumulate into one buffer.
//
//   Linear, a [N,in], g [N,out]: the per-example weight gradient is the outer product g_i a_iᵀ,
//     whose squared Frobenius norm is ‖a_i‖²·‖g_i‖² exactly; the bias gradient is g_i.
//   Conv2d, x [N,C,H,W], gy [N,O,T] (T = H'·W'): with the unfolded input A_i [T, d], d = C·kh·kw,
//     and G_i = gy_iᵀ [T, O], the weight gradient is G_iᵀA_i and
//       ghost:        ‖G_iᵀA_i‖²_F = ⟨A_iA_iᵀ, G_iG_iᵀ⟩_F, two T×T Gram matrices, O(T²(d+O))
//                     (Li, Tramèr, Liang, Hashimoto 2022, "Large language models can be strong
//                     differentially private learners", ghost clipping; Goodfellow 2015, "Efficient
//                     per-example gradient computations", for T = 1);
//       materialized: form G_iᵀA_i [O, d] and take its squared norm, O(T·d·O);
//     the bias gradient is Σ_t G_i[t,:] (conv_bias_per_example).
//   GroupNorm, x̂ and g [N,C,S]: dγ_i[c] = Σ_s g·x̂, dβ_i[c] = Σ_s g (group_norm_per_example).
// The clipped sum Σ_i c_i·grad_i is formed by the caller from these pieces: a gemm over rows of
// g scaled by c_i (scale_rows), the ordinary conv filter-gradient kernel on scaled g, or a
// weighted row sum (a gemv) of stored per-example gradients.
//
// CPU: OpenMP over examples; each thread owns its im2col and Gram/gradient buffers; OpenBLAS
// (single-threaded inside the parallel loop) for the products; ghost Grams use ssyrk (half the
// flops of a gemm) and their Frobenius inner product is accumulated in double.
// CUDA: one 256-thread block per example (warp-shuffle block reduction) for the Linear and
// row-norm kernels; one warp per (example, channel) row for the per-example bias and GroupNorm
// gradients; one thread per example for the clip factors; cublasSgemv for weighted row sums. For
// Conv2d, examples go in rounds sized by the workspace: a kernel unfolds the round's inputs,
// cublasSgemmStridedBatched forms the Gram matrices (or the per-example gradients), and one block
// per example reduces them (the ghost inner product in double).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/conv.h"
#include "core/config.h"

namespace aegis::kernels {

// Scratch bytes per example that conv2d_sq_norms needs on a CUDA device: the unfolded input
// (none for 1×1 stride-1 unpadded kernels), plus two T×T Gram matrices (ghost) or one [O, d]
// gradient (materialized, unless written to per_example_dw). The CUDA op handles
// workspace_bytes / this many examples per round (at least one must fit); the CPU op ignores
// the workspace, as its threads own their buffers.
std::size_t conv2d_sq_norms_scratch_per_example(const Conv2dGeometry& g, bool ghost, bool store_dw);

namespace cpu {
// sq_norms[n] += ‖a_n‖²·‖g_n‖² (+ ‖g_n‖² when with_bias).
void linear_sq_norms(const float* a, const float* g, std::int64_t n, std::int64_t in, std::int64_t out, bool with_bias,
                     float* sq_norms);
// sq_norms[r] += Σ_j x[r, j]².
void row_sq_norms(const float* x, std::int64_t rows, std::int64_t cols, float* sq_norms);
// out[r, :] = factors[r]·x[r, :]; out may equal x.
void scale_rows(const float* x, const float* factors, std::int64_t rows, std::int64_t cols, float* out);
// out[cols] = Σ_r factors[r]·x[r, :]: the clipped sum of stored per-example gradients (a gemv).
void weighted_row_sum(const float* x, const float* factors, std::int64_t rows, std::int64_t cols, float* out);
// gy [N, O, T] → per-example bias gradients out [N, O] = Σ_t gy.
void conv_bias_per_example(const float* gy, std::int64_t n, std::int64_t o, std::int64_t t, float* out);
// gy, xhat [N, C, S] → dgamma, dbeta [N, C] (either may be null).
void group_norm_per_example(const float* gy, const float* xhat, std::int64_t n, std::int64_t c, std::int64_t s,
                            float* dgamma, float* dbeta);
// Adds each example's squared weight-gradient norm of a convolution to sq_norms [g.batch]. With
// ghost = false the per-example gradients are materialized and, when per_example_dw is not null,
// also written there ([N, O, C·kh·kw]) so that the clipped sum can reuse them.
void conv2d_sq_norms(const Conv2dGeometry& g, bool ghost, const float* x, const float* gy, float* sq_norms,
                     float* per_example_dw, void* workspace, std::size_t workspace_bytes);
// norms[n] = sqrt(sq_norms[n]); factors[n] = mask[n]·min(1, max_norm/(norms[n] + 1e-6)), with
// mask null meaning all ones.
void clip_factors(const float* sq_norms, const float* mask, std::int64_t n, float max_norm, float* norms,
                  float* factors);
// The step's bookkeeping without copying N norms back: over the rows whose mask is not 0 (all rows
// when mask is null), summary[0] += #non-finite norms, summary[1] += #norms > max_norm (clipped),
// summary[2] += #norms ≤ max_norm (unclipped); over all rows, summary[3] += #mask entries outside
// [0, 1] (NaN included). summary is int64 [4] on the norms' device.
void clip_summary(const float* norms, const float* mask, std::int64_t n, float max_norm, std::int64_t* summary);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void linear_sq_norms(const float* d_a, const float* d_g, std::int64_t n, std::int64_t in, std::int64_t out,
                     bool with_bias, float* d_sq_norms);
void row_sq_norms(const float* d_x, std::int64_t rows, std::int64_t cols, float* d_sq_norms);
void scale_rows(const float* d_x, const float* d_factors, std::int64_t rows, std::int64_t cols, float* d_out);
void weighted_row_sum(const float* d_x, const float* d_factors, std::int64_t rows, std::int64_t cols, float* d_out);
void conv_bias_per_example(const float* d_gy, std::int64_t n, std::int64_t o, std::int64_t t, float* d_out);
void group_norm_per_example(const float* d_gy, const float* d_xhat, std::int64_t n, std::int64_t c, std::int64_t s,
                            float* d_dgamma, float* d_dbeta);
void conv2d_sq_norms(const Conv2dGeometry& g, bool ghost, const float* d_x, const float* d_gy, float* d_sq_norms,
                     float* d_per_example_dw, void* d_workspace, std::size_t workspace_bytes);
void clip_factors(const float* d_sq_norms, const float* d_mask, std::int64_t n, float max_norm, float* d_norms,
                  float* d_factors);
void clip_summary(const float* d_norms, const float* d_mask, std::int64_t n, float max_norm, std::int64_t* d_summary);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
