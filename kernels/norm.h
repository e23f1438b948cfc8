// Group normalization (Wu & He 2018) over float32 x viewed as [N, C, S], where S is the product
// of the spatial dimensions (S = 1 for [N, C] input). The C channels split into `groups`
// contiguous groups of C/groups channels; each (n, g) group is one contiguous run of
// M = (C/groups)·S elements, normalized by its own mean and biased variance:
// x̂ = (x − μ)·rstd, rstd = 1/sqrt(σ² + eps), y = γ[c]·x̂ + β[c] (γ, β may be null: no affine).
// The forward pass stores rstd [N·groups] and, when asked, x̂ [N, C, S], which is all the
// backward pass needs. Backward gives dx (per group) and dγ, dβ [C] (per channel); any of the
// three outputs may be null and is then skipped.
// CPU: one OpenMP iteration per (n, g) group (two-pass statistics in double), and one per
// channel for dγ, dβ. CUDA: one 256-thread block per (n, g) group, each thread striding over the
// group's elements and the partial sums combined by a warp-shuffle block reduction; dγ, dβ use
// one block per channel reducing over N·S elements.
#pragma once

#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

namespace cpu {
// x, y [n, c, spatial]; gamma, beta [c] or both null; rstd [n·groups]; xhat [n, c, spatial] or null.
void group_norm_forward(const float* x, const float* gamma, const float* beta, float* y, float* xhat, float* rstd,
                        std::int64_t n, std::int64_t c, std::int64_t spatial, std::int64_t groups, float eps);
// gy, xhat, dx [n, c, spatial]; rstd [n·groups]; gamma [c] or null; dgamma, dbeta [c]. Outputs
// are overwritten, not accumulated; null outputs are not computed.
void group_norm_backward(const float* gy, const float* xhat, const float* rstd, const float* gamma, float* dx,
                         float* dgamma, float* dbeta, std::int64_t n, std::int64_t c, std::int64_t spatial,
                         std::int64_t groups);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void group_norm_forward(const float* d_x, const float* d_gamma, const float* d_beta, float* d_y, float* d_xhat,
                        float* d_rstd, std::int64_t n, std::int64_t c, std::int64_t spatial, std::int64_t groups,
                        float eps);
void group_norm_backward(const float* d_gy, const float* d_xhat, const float* d_rstd, const float* d_gamma, float* d_dx,
                         float* d_dgamma, float* d_dbeta, std::int64_t n, std::int64_t c, std::int64_t spatial,
                         std::int64_t groups);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
