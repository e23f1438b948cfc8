#include "kernels/attack_opt.h"
#include "kernels/cuda/block_reduce.cuh"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

__global__ void cw_start_kernel(const float* x0, double* w, double* m1, double* m2, float* x_out, double* l2_sq,
                                long long d) {
  __shared__ double scratch[kWarps];
  const long long base = blockIdx.x * d;
  double acc = 0.0;
  for (long long q = threadIdx.x; q < d; q += blockDim.x) {
    const double wq = cw_start_w(x0[base + q]);
    w[base + q] = wq;
    m1[base + q] = 0.0;
    m2[base + q] = 0.0;
    const float x = cw_iterate(wq);
    x_out[base + q] = x;
    const double diff = static_cast<double>(x) - x0[base + q];
    acc += diff * diff;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) l2_sq[blockIdx.x] = acc;
}

// Carlini & Wagner 2017, §V: one Adam step (Kingma & Ba 2015, Alg. 1) of the block's example.
__global__ void cw_adam_kernel(CwAdamArgs a, const int* example_rows, const int* batch_rows, double* w, double* m1,
                               double* m2, const float* x0, const float* x_batch, const float* grad, float* x_next,
                               double* l2_sq) {
  __shared__ double scratch[kWarps];
  const long long j = blockIdx.x, d = a.d;
  const long long e = example_rows[j] * d, b = batch_rows[j] * d;
  double acc = 0.0;
  for (long long q = threadIdx.x; q < d; q += blockDim.x) {
    double wq = w[e + q], m1q = m1[e + q], m2q = m2[e + q];
    const float x = cw_adam_element(a.lr, a.corr1, a.corr2, wq, m1q, m2q, x_batch[b + q], x0[e + q], grad[b + q]);
    w[e + q] = wq;
    m1[e + q] = m1q;
    m2[e + q] = m2q;
    x_next[j * d + q] = x;
    const double diff = static_cast<double>(x) - x0[e + q];
    acc += diff * diff;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) l2_sq[j] = acc;
}

// The row of one APGD example as the block sees it; every point of the step is recomputed per
// element from these, so the bisection needs no scratch memory.
struct ApgdRow {
  const float* x;
  const float* x_prev;
  const float* x0;
  const float* g;
  double eta, eps, g_norm;
  bool l2;

  // x + η∇ (∇ the sign for L∞, g/‖g‖₂ for L2; zero for a zero gradient).
  __device__ double ascent(long long q) const {
    const double dir = l2 ? (g_norm > 0 ? g[q] / g_norm : 0.0) : (g[q] > 0 ? 1.0 : (g[q] < 0 ? -1.0 : 0.0));
    return x[q] + eta * dir;
  }
};

// The largest s ∈ [0, 1] with ‖clip[0,1](x0 + s(v − x0)) − x0‖₂ ≤ radius, by bisection; v(q) gives
// the point's coordinates. All threads of the block call it and get the same s.
template <class Point>
__device__ double l2_projection_scale(const Point& v, const float* x0, double radius, long long d, double* scratch) {
  const auto dist = [&](double s) {
    double acc = 0.0;
    for (long long q = threadIdx.x; q < d; q += blockDim.x) {
      const double y = apgd_l2_point(v(q), x0[q], s) - x0[q];
      acc += y * y;
    }
    return sqrt(block_sum(acc, scratch));
  };
  if (dist(1.0) <= radius) return 1.0;
  double lo = 0.0, hi = 1.0;  // dist(lo) ≤ radius < dist(hi)
  for (int it = 0; it < kApgdBisectionSteps; ++it) {
    const double mid = (lo + hi) / 2.0;
    if (dist(mid) <= radius) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Croce & Hein 2020, Alg. 1: z = P(x + η∇), then for step > 0 z ← P(x + α(z − x) + (1 − α)(x − x_prev)).
__global__ void apgd_step_kernel(ApgdStepArgs a, const int* state_rows, const int* grad_rows, float* x, float* x_prev,
                                 const float* x0, const float* grad, const double* eta, const float* eps) {
  __shared__ double scratch[kWarps];
  const long long d = a.d, r = state_rows[blockIdx.x];
  float* xr = x + r * d;
  float* pr = x_prev + r * d;
  const float* x0r = x0 + r * d;
  ApgdRow row{xr, pr, x0r, grad + static_cast<long long>(grad_rows[blockIdx.x]) * d, eta[r], eps[r], 0.0, a.l2};
  if (a.l2) {
    double g_sq = 0.0;
    for (long long q = threadIdx.x; q < d; q += blockDim.x) g_sq += static_cast<double>(row.g[q]) * row.g[q];
    row.g_norm = sqrt(block_sum(g_sq, scratch));
  }
  // Each thread writes only the elements it read in the passes above, so no barrier precedes
  // the writes.
  if (!a.l2) {
    for (long long q = threadIdx.x; q < d; q += blockDim.x) {
      const float z = apgd_linf_project(row.ascent(q), x0r[q], row.eps);
      const float next = a.momentum ? apgd_linf_project(apgd_momentum_point(xr[q], z, pr[q]), x0r[q], row.eps) : z;
      pr[q] = xr[q];
      xr[q] = next;
    }
    return;
  }
  const double radius = l2_target_radius(row.eps, d);
  const auto ascent = [&](long long q) { return row.ascent(q); };
  const double s1 = l2_projection_scale(ascent, x0r, radius, d, scratch);
  const auto first = [&](long long q) { return static_cast<float>(apgd_l2_point(row.ascent(q), x0r[q], s1)); };
  if (!a.momentum) {
    for (long long q = threadIdx.x; q < d; q += blockDim.x) {
      const float z = first(q);
      pr[q] = xr[q];
      xr[q] = z;
    }
    return;
  }
  const auto momentum = [&](long long q) { return apgd_momentum_point(xr[q], first(q), pr[q]); };
  const double s2 = l2_projection_scale(momentum, x0r, radius, d, scratch);
  for (long long q = threadIdx.x; q < d; q += blockDim.x) {
    const float z = static_cast<float>(apgd_l2_point(momentum(q), x0r[q], s2));
    pr[q] = xr[q];
    xr[q] = z;
  }
}

}  // namespace

void cw_start(const float* d_x0, double* d_w, double* d_m1, double* d_m2, float* d_x_out, double* d_l2_sq,
              std::int64_t n, std::int64_t d) {
  if (n <= 0) return;
  cw_start_kernel<<<static_cast<unsigned>(n), kBlock, 0, cuda_backend::stream()>>>(d_x0, d_w, d_m1, d_m2, d_x_out,
                                                                                   d_l2_sq, d);
  CUDA_CHECK_LAUNCH();
}

void cw_adam_step(const CwAdamArgs& args, const std::int32_t* d_example_rows, const std::int32_t* d_batch_rows,
                  double* d_w, double* d_m1, double* d_m2, const float* d_x0, const float* d_x_batch,
                  const float* d_grad, float* d_x_next, double* d_l2_sq) {
  if (args.count <= 0) return;
  cw_adam_kernel<<<static_cast<unsigned>(args.count), kBlock, 0, cuda_backend::stream()>>>(
      args, d_example_rows, d_batch_rows, d_w, d_m1, d_m2, d_x0, d_x_batch, d_grad, d_x_next, d_l2_sq);
  CUDA_CHECK_LAUNCH();
}

void apgd_step(const ApgdStepArgs& args, const std::int32_t* d_state_rows, const std::int32_t* d_grad_rows, float* d_x,
               float* d_x_prev, const float* d_x0, const float* d_grad, const double* d_eta, const float* d_eps) {
  if (args.count <= 0 || args.d <= 0) return;
  apgd_step_kernel<<<static_cast<unsigned>(args.count), kBlock, 0, cuda_backend::stream()>>>(
      args, d_state_rows, d_grad_rows, d_x, d_x_prev, d_x0, d_grad, d_eta, d_eps);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
