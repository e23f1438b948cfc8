// The CPU's direct convolution forward (kernels/cpu/conv_direct.cpp), which conv2d_forward uses
// instead of im2col + sgemm where direct_conv_applies().
#pragma once

#include "kernels/conv.h"

namespace aegis::kernels::cpu::detail {
// Kernels 2×2 to 5×5, stride 1 or 2, on a CPU with AVX2 and FMA.
bool direct_conv_applies(const Conv2dGeometry& g);
void conv2d_forward_direct(const Conv2dGeometry& g, const float* x, const float* w, const float* bias, float* y);
}  // namespace aegis::kernels::cpu::detail
