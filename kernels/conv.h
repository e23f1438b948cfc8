// 2-d convolution over float32 NCHW tensors with PyTorch's Conv2d semantics: cross-correlation,
// symmetric zero padding p, stride s, dilation d (tap (ki, kj) reads x[h'·s − p + d·ki,
// w'·s − p + d·kj]), no groups. x [N,C,H,W], w [O,C,kh,kw], bias [O] or null → y [N,O,H',W'] with
// H' = (H + 2p − d·(kh − 1) − 1)/s + 1 (floor), likewise W'.
// Backward: dx [N,C,H,W] (the adjoint of the forward map in x), dw [O,C,kh,kw] = Σ_n gy_n·cols_nᵀ,
// db [O] = Σ over n, h', w' of gy; each is a separate call so callers form only the gradients
// they need, and every output is overwritten, not accumulated.
// CPU: im2col + OpenBLAS sgemm one example at a time, OpenMP over the examples. Each thread owns a
// [C·kh·kw, H'·W'] column buffer; the filter gradient accumulates one [O, C·kh·kw] partial per
// thread, summed at the end. On 2 cores at batch 256 and the MNIST CNN's shapes this measured up
// to 2× faster, and never slower, than im2col of the whole batch into one [C·kh·kw, N·H'·W']
// matrix and a single sgemm (that matrix leaves the cache and needs an NCHW transpose on each
// side); for a 64-channel 16×16 layer the two tie. 1×1 kernels with stride 1 and no padding skip
// im2col; dilated ones (d > 1) always take im2col + sgemm. The forward pass of kernels from 2×2 to
// 5×5 with stride ≤ 2 and d = 1 runs instead as a direct convolution (kernels/cpu/conv_direct.cpp),
// and that of 3×3 stride-1 kernels with d = 1 and ≥ 8 channels as Winograd F(2×2, 3×3)
// (kernels/cpu/conv_winograd.cpp: 2.25× fewer multiplications, the same sums up to rounding),
// both with AVX2 + FMA, picked at run time when the CPU has them. On one core of an AMD EPYC:
// ResNet-20's 3×3 layers at 28–41 GMAC/s with im2col + sgemm, 52–60 direct, 89–102 multiply-adds
// of the direct definition per ns with Winograd.
// CUDA: cuDNN for forward, backward-data and backward-filter (the dilation in its descriptor),
// with the bias added by cudnnAddTensor and its gradient from cudnnConvolutionBackwardBias.
// Algorithms come from the cudnnGetConvolution*Algorithm_v7 heuristics, preferring deterministic
// full-fp32 (FMA, no TF32) ones, so GPU results are reproducible and match the CPU to fp32
// rounding; each call's workspace comes from the stream-ordered pool (cudaMallocAsync) and goes
// back after the call.
// The CUDA forward follows this thread's MathPrecision (core/math_precision.h): Tf32 lets cuDNN
// use TF32 tensor cores; Bf16/Fp16 round x and w to that 16-bit type, run cuDNN's pseudo-16-bit
// configuration (16-bit data, float32 compute type, 16-bit output) and widen the output to float32
// before adding the bias in float32. The backward passes ignore the setting and always compute
// in full fp32: the reduced modes are for inference only.
#pragma once

#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

struct Conv2dGeometry {
  std::int64_t batch = 0, in_channels = 0, height = 0, width = 0;
  std::int64_t out_channels = 0, kernel_h = 0, kernel_w = 0;
  std::int64_t stride = 1, padding = 0, dilation = 1;

  // The input extent a dilated kernel spans.
  std::int64_t extent_h() const { return dilation * (kernel_h - 1) + 1; }
  std::int64_t extent_w() const { return dilation * (kernel_w - 1) + 1; }
  std::int64_t out_height() const { return (height + 2 * padding - extent_h()) / stride + 1; }
  std::int64_t out_width() const { return (width + 2 * padding - extent_w()) / stride + 1; }
};

namespace cpu {
void conv2d_forward(const Conv2dGeometry& g, const float* x, const float* w, const float* bias, float* y);
void conv2d_backward_data(const Conv2dGeometry& g, const float* gy, const float* w, float* dx);
void conv2d_backward_filter(const Conv2dGeometry& g, const float* x, const float* gy, float* dw);
void conv2d_backward_bias(const Conv2dGeometry& g, const float* gy, float* db);
// Unfold (im2col): x [N,C,H,W] → cols [N, C·kh·kw, H'·W'], row (c, ki, kj) of example n holding
// x[n, c, h'·s − p + d·ki, w'·s − p + d·kj] (0 in the padding). Used for per-example gradient norms.
void conv2d_unfold(const Conv2dGeometry& g, const float* x, float* cols);
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void conv2d_forward(const Conv2dGeometry& g, const float* d_x, const float* d_w, const float* d_bias, float* d_y);
void conv2d_backward_data(const Conv2dGeometry& g, const float* d_gy, const float* d_w, float* d_dx);
void conv2d_backward_filter(const Conv2dGeometry& g, const float* d_x, const float* d_gy, float* d_dw);
void conv2d_backward_bias(const Conv2dGeometry& g, const float* d_gy, float* d_db);
void conv2d_unfold(const Conv2dGeometry& g, const float* d_x, float* d_cols);
// cuDNN plans (descriptors, algorithm, workspace size) are cached per shape, precision, pass,
// device and host thread; this is how many this thread holds (for tests and benchmarks).
std::int64_t conv2d_cached_plans();
}  // namespace cuda
#endif

}  // namespace aegis::kernels
