// Constant padding of the two spatial dimensions of float32 NCHW tensors: x [N,C,H,W] →
// y [N,C,top+H+bottom, left+W+right], y[n, c, top + h, left + w] = x[n, c, h, w] and `value`
// (0, or −∞ in front of a max pooling) everywhere else — ONNX Pad in mode "constant" over H and
// W. The backward pass is the crop: dx[n, c, h, w] = gy[n, c, top + h, left + w]; the padding's
// gradient goes nowhere. Outputs are overwritten, not accumulated; pads are ≥ 0.
// CPU: OpenMP over the N·C planes, a row copy per input row. CUDA: one thread per output element
// (forward) or input element (backward) in a grid-stride loop.
#pragma once

#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

struct Pad2dGeometry {
  std::int64_t planes = 0, height = 0, width = 0;  // planes = N·C
  std::int64_t top = 0, left = 0, bottom = 0, right = 0;

  std::int64_t out_height() const { return top + height + bottom; }
  std::int64_t out_width() const { return left + width + right; }
};

namespace cpu {
void pad2d_forward(const Pad2dGeometry& g, const float* x, float value, float* y);
void pad2d_backward(const Pad2dGeometry& g, const float* gy, float* dx);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void pad2d_forward(const Pad2dGeometry& g, const float* d_x, float value, float* d_y);
void pad2d_backward(const Pad2dGeometry& g, const float* d_gy, float* d_dx);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
