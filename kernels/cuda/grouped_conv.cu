#include "core/cuda/check.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/grouped_conv.h"

namespace aegis::kernels::cuda {
namespace {

// Conv2dGeometry with the groups and output size, passed to kernels by value.
struct Dims {
  long long batch, in_c, h, w, out_c, kh, kw, stride, padding, out_h, out_w, cg, og;
};
Dims dims_of(const Conv2dGeometry& g, std::int64_t groups) {
  return {g.batch,    g.in_channels, g.height,       g.width,          g.out_channels,        g.kernel_h,
          g.kernel_w, g.stride,      g.padding,      g.out_height(),   g.out_width(),         g.in_channels / groups,
          g.out_channels / groups};
}

#define AEGIS_GRID_STRIDE(i, n) \
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < (n); i += 1LL * gridDim.x * blockDim.x)

// One thread per output element, the taps in the CPU kernel's order (c', a, b).
__global__ void forward_kernel(Dims d, const float* x, const float* w, const float* bias, float* y) {
  const long long total = d.batch * d.out_c * d.out_h * d.out_w;
  AEGIS_GRID_STRIDE(at, total) {
    const long long j = at % d.out_w, i = (at / d.out_w) % d.out_h, o = (at / (d.out_w * d.out_h)) % d.out_c,
                    n = at / (d.out_w * d.out_h * d.out_c);
    const long long q = o / d.og;
    float acc = bias ? bias[o] : 0.0f;
    for (long long ci = 0; ci < d.cg; ++ci) {
      const float* xp = x + (n * d.in_c + q * d.cg + ci) * d.h * d.w;
      const float* wp = w + (o * d.cg + ci) * d.kh * d.kw;
      for (long long a = 0; a < d.kh; ++a) {
        const long long hh = i * d.stride - d.padding + a;
        if (hh < 0 || hh >= d.h) continue;
        for (long long b = 0; b < d.kw; ++b) {
          const long long vv = j * d.stride - d.padding + b;
          if (vv >= 0 && vv < d.w) acc += wp[a * d.kw + b] * xp[hh * d.w + vv];
        }
      }
    }
    y[at] = acc;
  }
}

// One thread per input element, gathering from the outputs of its group whose windows cover it.
__global__ void backward_data_kernel(Dims d, const float* gy, const float* w, float* dx) {
  const long long total = d.batch * d.in_c * d.h * d.w;
  AEGIS_GRID_STRIDE(at, total) {
    const long long v = at % d.w, h = (at / d.w) % d.h, c = (at / (d.w * d.h)) % d.in_c, n = at / (d.w * d.h * d.in_c);
    const long long q = c / d.cg, ci = c % d.cg;
    float acc = 0.0f;
    for (long long o = q * d.og; o < (q + 1) * d.og; ++o) {
      const float* gyp = gy + (n * d.out_c + o) * d.out_h * d.out_w;
      const float* wp = w + (o * d.cg + ci) * d.kh * d.kw;
      for (long long a = 0; a < d.kh; ++a) {
        const long long ti = h + d.padding - a;  // = i·s
        if (ti < 0 || ti % d.stride != 0 || ti / d.stride >= d.out_h) continue;
        for (long long b = 0; b < d.kw; ++b) {
          const long long tj = v + d.padding - b;
          if (tj < 0 || tj % d.stride != 0 || tj / d.stride >= d.out_w) continue;
          acc += wp[a * d.kw + b] * gyp[(ti / d.stride) * d.out_w + tj / d.stride];
        }
      }
    }
    dx[at] = acc;
  }
}

// One block per weight: the block's threads split the N·H'·W' products, summed in double.
__global__ void backward_filter_kernel(Dims d, const float* x, const float* gy, float* dw) {
  __shared__ double scratch[kWarps];
  const long long at = blockIdx.x;
  const long long b = at % d.kw, a = (at / d.kw) % d.kh, ci = (at / (d.kw * d.kh)) % d.cg,
                  o = at / (d.kw * d.kh * d.cg);
  const long long c = (o / d.og) * d.cg + ci, plane = d.out_h * d.out_w;
  double acc = 0.0;
  for (long long t = threadIdx.x; t < d.batch * plane; t += blockDim.x) {
    const long long n = t / plane, i = (t % plane) / d.out_w, j = t % d.out_w;
    const long long hh = i * d.stride - d.padding + a, vv = j * d.stride - d.padding + b;
    if (hh >= 0 && hh < d.h && vv >= 0 && vv < d.w)
      acc += static_cast<double>(gy[(n * d.out_c + o) * plane + i * d.out_w + j]) *
             x[((n * d.in_c + c) * d.h + hh) * d.w + vv];
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) dw[at] = static_cast<float>(acc);
}

unsigned grid(long long n) {
  return cuda_backend::grid_for(n, kBlock);
}

}  // namespace

void grouped_conv2d_forward(const Conv2dGeometry& g, std::int64_t groups, const float* d_x, const float* d_w,
                            const float* d_bias, float* d_y) {
  const Dims d = dims_of(g, groups);
  const long long n = d.batch * d.out_c * d.out_h * d.out_w;
  if (n <= 0) return;
  forward_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(d, d_x, d_w, d_bias, d_y);
  CUDA_CHECK_LAUNCH();
}

void grouped_conv2d_backward_data(const Conv2dGeometry& g, std::int64_t groups, const float* d_gy, const float* d_w,
                                  float* d_dx) {
  const Dims d = dims_of(g, groups);
  const long long n = d.batch * d.in_c * d.h * d.w;
  if (n <= 0) return;
  backward_data_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(d, d_gy, d_w, d_dx);
  CUDA_CHECK_LAUNCH();
}

void grouped_conv2d_backward_filter(const Conv2dGeometry& g, std::int64_t groups, const float* d_x,
                                    const float* d_gy, float* d_dw) {
  const Dims d = dims_of(g, groups);
  const long long weights = d.out_c * d.cg * d.kh * d.kw;
  if (weights <= 0) return;
  backward_filter_kernel<<<static_cast<unsigned>(weights), kBlock, 0, cuda_backend::stream()>>>(d, d_x, d_gy, d_dw);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
