// Elementwise ops over flat float32 buffers of n elements: fills, sums, scaling, the pointwise
// activations and their derivatives, and a NaN/Inf count. CUDA: one thread per element in a
// grid-stride loop; the non-finite count reduces per block, then one atomic per block.
// count_nonfinite_into adds the count to a counter on the buffer's own device and does not
// synchronize, so that many buffers are checked with one copy back (the optimizer's step).
#pragma once

#include <cstdint>

#include "core/config.h"

namespace aegis::kernels {

enum class Activation { ReLU, Tanh, Sigmoid, Softplus };

namespace cpu {
void fill(float* out, float value, std::int64_t n);
void add(const float* a, const float* b, float* out, std::int64_t n);        // out = a + b
void axpy(float alpha, const float* x, float* y, std::int64_t n);            // y += alpha * x
void scale(float alpha, float* x, std::int64_t n);                           // x *= alpha
// y = f(x). ReLU: max(0,x); Tanh: tanh x; Sigmoid: 1/(1+e^-x); Softplus: log(1+e^x), computed as
// max(x,0) + log1p(e^-|x|) so that neither e^x overflows nor 1 + e^x rounds away a small e^x.
void activation_forward(Activation f, const float* x, float* y, std::int64_t n);
// dx = dy * f'(x), with f' written through the saved output y: ReLU 1[y>0], Tanh 1-y²,
// Sigmoid y(1-y), Softplus sigmoid(x) = 1 − e^-y (from e^y = 1 + e^x), formed without the
// cancellation where y, and so the slope, is tiny (CUDA: −expm1(−y); CPU: a series there).
void activation_backward(Activation f, const float* y, const float* dy, float* dx, std::int64_t n);
std::int64_t count_nonfinite(const float* x, std::int64_t n);
void count_nonfinite_into(const float* x, std::int64_t n, std::int64_t* counter);  // *counter += count
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void fill(float* d_out, float value, std::int64_t n);
void add(const float* d_a, const float* d_b, float* d_out, std::int64_t n);
void axpy(float alpha, const float* d_x, float* d_y, std::int64_t n);
void scale(float alpha, float* d_x, std::int64_t n);
void activation_forward(Activation f, const float* d_x, float* d_y, std::int64_t n);
void activation_backward(Activation f, const float* d_y, const float* d_dy, float* d_dx, std::int64_t n);
std::int64_t count_nonfinite(const float* d_x, std::int64_t n);
void count_nonfinite_into(const float* d_x, std::int64_t n, std::int64_t* d_counter);  // no host sync
}  // namespace cuda
#endif

}  // namespace aegis::kernels
