// 2-d max and average pooling over float32 NCHW tensors with PyTorch's semantics (square window
// k, stride s, symmetric padding p ≤ k/2, floor output size): x [N,C,H,W] → y [N,C,H',W'],
// H' = (H + 2p − k)/s + 1. Max pooling treats padding as −∞ (so every window, which by p ≤ k/2
// holds at least one real element, takes a real value), propagates NaN, and on ties keeps the
// first maximum in row-major window order; the forward pass can record that argmax as an int32
// index h·W + w into its (n, c) plane, and the backward pass routes each output gradient to it.
// Average pooling divides by k² including padded positions (count_include_pad = True).
// Backward outputs dx are overwritten, not accumulated.
// CPU: OpenMP over the N·C planes; within a plane each output row is swept one window tap at a
// time (vectorizable, branch-free max), which still visits every window's elements in row-major
// order. CUDA: forward one thread per output element; backward one thread per input element,
// gathering from the (at most ⌈k/s⌉²) windows that cover it — for max pooling, those whose
// recorded argmax is this element. The gather needs no atomics, so overlapping windows (s < k)
// still give deterministic gradients.
#pragma once

#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

struct Pool2dGeometry {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0;
  std::int64_t kernel = 2, stride = 2, padding = 0;

  std::int64_t out_height() const { return (height + 2 * padding - kernel) / stride + 1; }
  std::int64_t out_width() const { return (width + 2 * padding - kernel) / stride + 1; }
};

namespace cpu {
// argmax [N,C,H',W'] may be null (inference: nothing to route gradients to).
void max_pool2d_forward(const Pool2dGeometry& g, const float* x, float* y, std::int32_t* argmax);
void max_pool2d_backward(const Pool2dGeometry& g, const float* gy, const std::int32_t* argmax, float* dx);
void avg_pool2d_forward(const Pool2dGeometry& g, const float* x, float* y);
void avg_pool2d_backward(const Pool2dGeometry& g, const float* gy, float* dx);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void max_pool2d_forward(const Pool2dGeometry& g, const float* d_x, float* d_y, std::int32_t* d_argmax);
void max_pool2d_backward(const Pool2dGeometry& g, const float* d_gy, const std::int32_t* d_argmax, float* d_dx);
void avg_pool2d_forward(const Pool2dGeometry& g, const float* d_x, float* d_y);
void avg_pool2d_backward(const Pool2dGeometry& g, const float* d_gy, float* d_dx);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
