// 2-d max and average pooling over float32 NCHW tensors with PyTorch's semantics (square window
// k, stride s, symmetric padding p ≤ k/2): x [N,C,H,W] → y [N,C,H',W'], H' = ⌊(H + 2p − k)/s⌋ + 1,
// or with ceil_mode ⌈(H + 2p − k)/s⌉ + 1, less one when that last window would start at or beyond
// H + p (in the right padding) — the rule of PyTorch and of onnxruntime (checked against 1.32).
// Max pooling treats padding, and the overhang of a ceil_mode window, as −∞ (so every window,
// which by p ≤ k/2 and that rule holds at least one real element, takes a real value), propagates
// NaN, and on ties keeps the first maximum in row-major window order; the forward pass can record
// that argmax as an int32 index h·W + w into its (n, c) plane, and the backward pass routes each
// output gradient to it. Average pooling sums the window's real elements and divides by the
// window's extent clipped to the padded input [−p, H + p) (count_include_pad: k² except for a
// ceil_mode window that overhangs), or clipped to the image [0, H) (count_include_pad = false:
// the number of real elements), per axis — pool_extent below.
// Backward outputs dx are overwritten, not accumulated.
// CPU: OpenMP over the N·C planes; within a plane each output row is swept one window tap at a
// time (vectorizable, branch-free max), which still visits every window's elements in row-major
// order. CUDA: forward one thread per output element; backward one thread per input element,
// gathering from the (at most ⌈k/s⌉²) windows that cover it — for max pooling, those whose
// recorded argmax is this element. The gather needs no atomics, so overlapping windows (s < k)
// still give deterministic gradients.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

// Output size along an axis of `size` inputs (size + 2·padding ≥ kernel).
inline std::int64_t pooled_size(std::int64_t size, std::int64_t kernel, std::int64_t stride, std::int64_t padding,
                                bool ceil_mode) {
  const std::int64_t span = size + 2 * padding - kernel;
  std::int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= size + padding) --out;
  return out;
}

// The divisor's factor along one axis for the window starting at `start` (= o·s − p).
inline std::int64_t pool_extent(std::int64_t start, std::int64_t kernel, std::int64_t size, std::int64_t padding,
                                bool count_include_pad) {
  if (count_include_pad) return std::min(start + kernel, size + padding) - start;
  return std::min(start + kernel, size) - std::max<std::int64_t>(start, 0);
}

struct Pool2dGeometry {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0;
  std::int64_t kernel = 2, stride = 2, padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;  // average pooling only

  std::int64_t out_height() const { return pooled_size(height, kernel, stride, padding, ceil_mode); }
  std::int64_t out_width() const { return pooled_size(width, kernel, stride, padding, ceil_mode); }
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
