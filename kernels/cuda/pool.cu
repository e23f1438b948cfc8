#include "kernels/pool.h"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;

// Pool2dGeometry with the output size precomputed, passed to kernels by value.
struct Dims {
  long long planes, height, width, out_h, out_w, kernel, stride, padding;
  bool include_pad;
};
Dims dims_of(const Pool2dGeometry& g) {
  return {g.batch * g.channels, g.height, g.width, g.out_height(), g.out_width(), g.kernel, g.stride, g.padding,
          g.count_include_pad};
}

// kernels/pool.h's pool_extent on the device: the divisor's factor for a window starting at `start`.
__device__ long long extent(long long start, long long kernel, long long size, long long padding, bool include_pad) {
  return include_pad ? min(start + kernel, size + padding) - start : min(start + kernel, size) - max(start, 0LL);
}
__device__ float inverse_divisor(const Dims& d, long long oh, long long ow) {
  const long long rows = extent(oh * d.stride - d.padding, d.kernel, d.height, d.padding, d.include_pad);
  const long long cols = extent(ow * d.stride - d.padding, d.kernel, d.width, d.padding, d.include_pad);
  return 1.0f / static_cast<float>(rows * cols);
}

#define AEGIS_GRID_STRIDE(i, n) \
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < (n); i += 1LL * gridDim.x * blockDim.x)

// One thread per output element; the same window order and tie rule as the CPU kernel.
__global__ void max_pool_forward_kernel(Dims d, const float* x, float* y, int* argmax) {
  const long long total = d.planes * d.out_h * d.out_w;
  AEGIS_GRID_STRIDE(i, total) {
    const long long ow = i % d.out_w, oh = (i / d.out_w) % d.out_h, plane = i / (d.out_w * d.out_h);
    const long long h0 = oh * d.stride - d.padding, w0 = ow * d.stride - d.padding;
    const long long h_lo = max(h0, 0LL), h_hi = min(h0 + d.kernel, d.height);
    const long long w_lo = max(w0, 0LL), w_hi = min(w0 + d.kernel, d.width);
    const float* xp = x + plane * d.height * d.width;
    long long best_at = h_lo * d.width + w_lo;  // p ≤ k/2: the window holds a real element
    float best = xp[best_at];
    for (long long h = h_lo; h < h_hi; ++h)
      for (long long w = w_lo; w < w_hi; ++w) {
        const float v = xp[h * d.width + w];
        if (v > best || (isnan(v) && !isnan(best))) {
          best = v;
          best_at = h * d.width + w;
        }
      }
    y[i] = best;
    if (argmax) argmax[i] = static_cast<int>(best_at);
  }
}

__global__ void avg_pool_forward_kernel(Dims d, const float* x, float* y) {
  const long long total = d.planes * d.out_h * d.out_w;
  AEGIS_GRID_STRIDE(i, total) {
    const long long ow = i % d.out_w, oh = (i / d.out_w) % d.out_h, plane = i / (d.out_w * d.out_h);
    const long long h0 = oh * d.stride - d.padding, w0 = ow * d.stride - d.padding;
    const long long h_lo = max(h0, 0LL), h_hi = min(h0 + d.kernel, d.height);
    const long long w_lo = max(w0, 0LL), w_hi = min(w0 + d.kernel, d.width);
    const float* xp = x + plane * d.height * d.width;
    float total_in_window = 0.0f;
    for (long long h = h_lo; h < h_hi; ++h)
      for (long long w = w_lo; w < w_hi; ++w) total_in_window += xp[h * d.width + w];
    y[i] = total_in_window * inverse_divisor(d, oh, ow);
  }
}

// Outputs o whose window [o·s − p, o·s − p + k) covers input position `at`: [lo, hi].
__device__ void covering_outputs(long long at, long long kernel, long long stride, long long padding, long long out_n,
                                 long long& lo, long long& hi) {
  const long long first = at + padding - kernel + 1;  // o·s ≥ first
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  hi = min((at + padding) / stride, out_n - 1);
}

// One thread per input element, gathering from the windows that cover it: no atomics, and the
// result does not depend on thread scheduling.
__global__ void max_pool_backward_kernel(Dims d, const float* gy, const int* argmax, float* dx) {
  const long long total = d.planes * d.height * d.width;
  AEGIS_GRID_STRIDE(i, total) {
    const long long iw = i % d.width, ih = (i / d.width) % d.height, plane = i / (d.width * d.height);
    long long oh_lo, oh_hi, ow_lo, ow_hi;
    covering_outputs(ih, d.kernel, d.stride, d.padding, d.out_h, oh_lo, oh_hi);
    covering_outputs(iw, d.kernel, d.stride, d.padding, d.out_w, ow_lo, ow_hi);
    const int me = static_cast<int>(ih * d.width + iw);
    const long long base = plane * d.out_h * d.out_w;
    float acc = 0.0f;
    for (long long oh = oh_lo; oh <= oh_hi; ++oh)
      for (long long ow = ow_lo; ow <= ow_hi; ++ow) {
        const long long o = base + oh * d.out_w + ow;
        if (argmax[o] == me) acc += gy[o];
      }
    dx[i] = acc;
  }
}

__global__ void avg_pool_backward_kernel(Dims d, const float* gy, float* dx) {
  const long long total = d.planes * d.height * d.width;
  AEGIS_GRID_STRIDE(i, total) {
    const long long iw = i % d.width, ih = (i / d.width) % d.height, plane = i / (d.width * d.height);
    long long oh_lo, oh_hi, ow_lo, ow_hi;
    covering_outputs(ih, d.kernel, d.stride, d.padding, d.out_h, oh_lo, oh_hi);
    covering_outputs(iw, d.kernel, d.stride, d.padding, d.out_w, ow_lo, ow_hi);
    const long long base = plane * d.out_h * d.out_w;
    float acc = 0.0f;
    for (long long oh = oh_lo; oh <= oh_hi; ++oh)
      for (long long ow = ow_lo; ow <= ow_hi; ++ow) acc += gy[base + oh * d.out_w + ow] * inverse_divisor(d, oh, ow);
    dx[i] = acc;
  }
}

unsigned grid(long long n) {
  return cuda_backend::grid_for(n, kBlock);
}

}  // namespace

void max_pool2d_forward(const Pool2dGeometry& g, const float* d_x, float* d_y, std::int32_t* d_argmax) {
  const Dims d = dims_of(g);
  const long long n = d.planes * d.out_h * d.out_w;
  if (n <= 0) return;
  max_pool_forward_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(d, d_x, d_y, d_argmax);
  CUDA_CHECK_LAUNCH();
}

void max_pool2d_backward(const Pool2dGeometry& g, const float* d_gy, const std::int32_t* d_argmax, float* d_dx) {
  const Dims d = dims_of(g);
  const long long n = d.planes * d.height * d.width;
  if (n <= 0) return;
  max_pool_backward_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(d, d_gy, d_argmax, d_dx);
  CUDA_CHECK_LAUNCH();
}

void avg_pool2d_forward(const Pool2dGeometry& g, const float* d_x, float* d_y) {
  const Dims d = dims_of(g);
  const long long n = d.planes * d.out_h * d.out_w;
  if (n <= 0) return;
  avg_pool_forward_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(d, d_x, d_y);
  CUDA_CHECK_LAUNCH();
}

void avg_pool2d_backward(const Pool2dGeometry& g, const float* d_gy, float* d_dx) {
  const Dims d = dims_of(g);
  const long long n = d.planes * d.height * d.width;
  if (n <= 0) return;
  avg_pool_backward_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(d, d_gy, d_dx);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
