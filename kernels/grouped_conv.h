// Grouped 2-d convolution (depthwise when groups = C) over float32 NCHW tensors, PyTorch's
// Conv2d(groups=G) semantics: the C input and O output channels split into G groups of C/G and
// O/G; output channel o (group q = o / (O/G)) reads only the input channels of group q:
//   y[n,o,i,j] = b[o] + Σ_{c'<C/G} Σ_{a<kh} Σ_{b<kw} w[o,c',a,b] · x[n, q·C/G + c', i·s − p + a, j·s − p + b]
// (zero outside the image), x [N,C,H,W], w [O, C/G, kh, kw] → y [N,O,H',W'] with the output
// size of kernels/conv.h (stride s, symmetric padding p, no dilation). Backward:
//   dx[n,c,h,v] = Σ_{o in group(c)} Σ_{a,b: h = i·s − p + a, v = j·s − p + b} w[o, c mod C/G, a, b] · gy[n,o,i,j]
//   dw[o,c',a,b] = Σ_n Σ_{i,j} gy[n,o,i,j] · x[n, q·C/G + c', i·s − p + a, j·s − p + b]
// and the bias gradient is conv2d_backward_bias's (it does not depend on the groups). Outputs
// are overwritten. These are direct loops — C/G·kh·kw multiply-adds per output, a grouped
// convolution's real cost, not the G× of a dense convolution with a block-diagonal weight.
// CPU: OpenMP over (example, output channel) planes for y, (example, input channel) planes for
// dx (each thread scatters into its own plane) and weights for dw (sums over N·H'·W' in double).
// CUDA: one thread per output element (y) and per input element (dx, gathering from the windows
// that cover it, no atomics), one 256-thread block per weight (dw, a block reduction in double).
#pragma once

#include <cstdint>

#include "core/config.h"
#include "kernels/conv.h"

namespace aegis::kernels {

namespace cpu {
void grouped_conv2d_forward(const Conv2dGeometry& g, std::int64_t groups, const float* x, const float* w,
                            const float* bias, float* y);
void grouped_conv2d_backward_data(const Conv2dGeometry& g, std::int64_t groups, const float* gy, const float* w,
                                  float* dx);
void grouped_conv2d_backward_filter(const Conv2dGeometry& g, std::int64_t groups, const float* x, const float* gy,
                                    float* dw);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void grouped_conv2d_forward(const Conv2dGeometry& g, std::int64_t groups, const float* d_x, const float* d_w,
                            const float* d_bias, float* d_y);
void grouped_conv2d_backward_data(const Conv2dGeometry& g, std::int64_t groups, const float* d_gy, const float* d_w,
                                  float* d_dx);
void grouped_conv2d_backward_filter(const Conv2dGeometry& g, std::int64_t groups, const float* d_x,
                                    const float* d_gy, float* d_dw);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
