// A fixed per-channel affine map over float32 tensors [N, C, S...] (S = the product of the
// trailing dimensions, 1 for [N, C]): y[n,c,s] = x[n,c,s]·scale[c] + shift[c] — an input
// normalization (x − μ)/σ, or a BatchNorm in inference form that follows no convolution. Its
// adjoint in x: dx[n,c,s] = gy[n,c,s]·scale[c]. One multiply and one add per element, so both
// backends give the same bits (no FMA contraction in the CUDA kernel: __fmul_rn, __fadd_rn).
// CPU: OpenMP over the N·C rows; CUDA: one thread per element.
#pragma once

#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

namespace cpu {
void channel_affine_forward(std::int64_t n, std::int64_t c, std::int64_t s, const float* x, const float* scale,
                            const float* shift, float* y);
void channel_affine_backward(std::int64_t n, std::int64_t c, std::int64_t s, const float* gy, const float* scale,
                             float* dx);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void channel_affine_forward(std::int64_t n, std::int64_t c, std::int64_t s, const float* d_x, const float* d_scale,
                            const float* d_shift, float* d_y);
void channel_affine_backward(std::int64_t n, std::int64_t c, std::int64_t s, const float* d_gy, const float* d_scale,
                             float* d_dx);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
