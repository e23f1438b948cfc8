// The CPU's Winograd F(2×2, 3×3) convolution forward (kernels/cpu/conv_winograd.cpp), which
// conv2d_forward uses for 3×3 stride-1 layers where winograd_conv_applies().
#pragma once

#include "kernels/conv.h"

namespace aegis::kernels::cpu::detail {
// 3×3 kernels, stride 1, at least 8 channels in and out, 7, 8 or at least 16 output columns, on a CPU
// with AVX2 and FMA.
bool winograd_conv_applies(const Conv2dGeometry& g);
void conv2d_forward_winograd(const Conv2dGeometry& g, const float* x, const float* w, const float* bias, float* y);
}  // namespace aegis::kernels::cpu::detail
