#include <climits>

#include "kernels/per_example.h"
#include "core/cuda/check.h"
#include "kernels/cuda/warp_reduce.cuh"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;  // a multiple of 32: the block reductions rely on whole warps

// Sum of v over the block, returned to every thread; scratch holds one value per warp. The
// leading barrier lets a block call it twice with the same scratch.
template <class T>
__device__ T block_sum(T v, T* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>((blockDim.x + 31) >> 5) ? scratch[lane] : T(0);
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Block n: sq_norms[n] += ‖a_n‖²·‖g_n‖² (+ ‖g_n‖²).
__global__ void linear_sq_norms_kernel(const float* a, const float* g, long long in, long long out, bool with_bias,
                                       float* sq_norms) {
  __shared__ float scratch[32];
  const long long n = blockIdx.x;
  float aa = 0.0f, gg = 0.0f;
  for (long long j = threadIdx.x; j < in; j += blockDim.x) aa = fmaf(a[n * in + j], a[n * in + j], aa);
  for (long long j = threadIdx.x; j < out; j += blockDim.x) gg = fmaf(g[n * out + j], g[n * out + j], gg);
  aa = block_sum(aa, scratch);
  gg = block_sum(gg, scratch);
  if (threadIdx.x == 0) sq_norms[n] += aa * gg + (with_bias ? gg : 0.0f);
}

// Block r: sq_norms[r] += Σ_j x[r, j]².
__global__ void row_sq_norms_kernel(const float* x, long long cols, float* sq_norms) {
  __shared__ float scratch[32];
  const float* row = x + blockIdx.x * cols;
  float acc = 0.0f;
  for (long long j = threadIdx.x; j < cols; j += blockDim.x) acc = fmaf(row[j], row[j], acc);
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) sq_norms[blockIdx.x] += acc;
}

__global__ void scale_rows_kernel(const float* x, const float* factors, long long total, long long cols, float* out) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < total; i += 1LL * gridDim.x * blockDim.x)
    out[i] = factors[i / cols] * x[i];
}

// One warp per row of length t (rows = N·O or N·C): per-example bias / GroupNorm gradients.
// xhat null: out_g[r] = Σ g only.
__global__ void row_sums_kernel(const float* g, const float* xhat, long long rows, long long t, float* out_g,
                                float* out_gh) {
  const long long r = blockIdx.x * (blockDim.x / 32LL) + (threadIdx.x >> 5);
  if (r >= rows) return;  // whole warps leave together: rows are per warp
  const int lane = threadIdx.x & 31;
  float sg = 0.0f, sgh = 0.0f;
  for (long long j = lane; j < t; j += 32) {
    const float v = g[r * t + j];
    sg += v;
    if (xhat) sgh = fmaf(v, xhat[r * t + j], sgh);
  }
  sg = warp_sum(sg);
  sgh = warp_sum(sgh);
  if (lane == 0) {
    if (out_g) out_g[r] = sg;
    if (out_gh) out_gh[r] = sgh;
  }
}

// Block b: sq_norms[b] += ⟨A, B⟩_F over `len` elements, accumulated in double because the
// ghost-norm terms have both signs and partly cancel.
__global__ void frobenius_dot_kernel(const float* a, const float* b, long long len, float* sq_norms) {
  __shared__ double scratch[32];
  const float* ab = a + blockIdx.x * len;
  const float* bb = b + blockIdx.x * len;
  double acc = 0.0;
  for (long long j = threadIdx.x; j < len; j += blockDim.x) acc += static_cast<double>(ab[j]) * bb[j];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) sq_norms[blockIdx.x] += static_cast<float>(acc);
}

__global__ void clip_factors_kernel(const float* sq_norms, const float* mask, long long n, float max_norm, float* norms,
                                    float* factors) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x) {
    const float norm = sqrtf(fmaxf(sq_norms[i], 0.0f));  // a ghost norm can round a hair below 0
    norms[i] = norm;
    const float c = fminf(1.0f, max_norm / (norm + 1e-6f));
    factors[i] = !mask ? c : mask[i] == 0.0f ? 0.0f : mask[i] * c;
  }
}

// One thread per row (grid-stride); each thread adds its nonzero counts with one atomic each. n is
// a batch (hundreds of rows), so contention is negligible next to the launch.
__global__ void clip_summary_kernel(const float* norms, const float* mask, long long n, float max_norm,
                                    unsigned long long* summary) {
  unsigned long long nonfinite = 0, clipped = 0, unclipped = 0, bad_mask = 0;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x) {
    if (mask && !(mask[i] >= 0.0f && mask[i] <= 1.0f)) ++bad_mask;
    if (mask && mask[i] == 0.0f) continue;
    const float v = norms[i];
    nonfinite += isfinite(v) ? 0 : 1;
    clipped += v > max_norm ? 1 : 0;
    unclipped += v <= max_norm ? 1 : 0;
  }
  if (nonfinite) atomicAdd(summary, nonfinite);
  if (clipped) atomicAdd(summary + 1, clipped);
  if (unclipped) atomicAdd(summary + 2, unclipped);
  if (bad_mask) atomicAdd(summary + 3, bad_mask);
}

int as_int(long long v, const char* what) {
  AEGIS_CHECK_AS(ShapeError, v >= 0 && v <= INT_MAX,
                 "per-example norms on CUDA: " << what << " " << v << " exceeds cuBLAS's int range");
  return static_cast<int>(v);
}

unsigned grid_of(long long blocks, const char* what) {
  AEGIS_CHECK_AS(ShapeError, blocks <= INT_MAX, "per-example norms on CUDA: " << blocks << " " << what);
  return static_cast<unsigned>(blocks);
}

bool is_pointwise(const Conv2dGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride == 1 && g.padding == 0;
}

}  // namespace

void linear_sq_norms(const float* d_a, const float* d_g, std::int64_t n, std::int64_t in, std::int64_t out,
                     bool with_bias, float* d_sq_norms) {
  if (n == 0) return;
  linear_sq_norms_kernel<<<grid_of(n, "examples"), kBlock, 0, cuda_backend::stream()>>>(d_a, d_g, in, out, with_bias,
                                                                                        d_sq_norms);
  CUDA_CHECK_LAUNCH();
}

void row_sq_norms(const float* d_x, std::int64_t rows, std::int64_t cols, float* d_sq_norms) {
  if (rows == 0) return;
  row_sq_norms_kernel<<<grid_of(rows, "rows"), kBlock, 0, cuda_backend::stream()>>>(d_x, cols, d_sq_norms);
  CUDA_CHECK_LAUNCH();
}

void scale_rows(const float* d_x, const float* d_factors, std::int64_t rows, std::int64_t cols, float* d_out) {
  if (rows * cols == 0) return;
  scale_rows_kernel<<<cuda_backend::grid_for(rows * cols, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      d_x, d_factors, rows * cols, cols, d_out);
  CUDA_CHECK_LAUNCH();
}

void weighted_row_sum(const float* d_x, const float* d_factors, std::int64_t rows, std::int64_t cols, float* d_out) {
  if (cols == 0) return;
  if (rows == 0) {
    CUDA_CHECK(cudaMemsetAsync(d_out, 0, sizeof(float) * cols, cuda_backend::stream()));
    return;
  }
  // Row-major x [rows, cols] is the column-major cols×rows matrix X; out = X·factors.
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasSgemv(cuda_backend::cublas_handle(), CUBLAS_OP_N, as_int(cols, "gradient size"),
                           as_int(rows, "examples"), &one, d_x, as_int(cols, "gradient size"), d_factors, 1, &zero,
                           d_out, 1));
}

void conv_bias_per_example(const float* d_gy, std::int64_t n, std::int64_t o, std::int64_t t, float* d_out) {
  const long long rows = n * o;
  if (rows == 0) return;
  row_sums_kernel<<<grid_of((rows + kBlock / 32 - 1) / (kBlock / 32), "rows"), kBlock, 0, cuda_backend::stream()>>>(
      d_gy, nullptr, rows, t, d_out, nullptr);
  CUDA_CHECK_LAUNCH();
}

void group_norm_per_example(const float* d_gy, const float* d_xhat, std::int64_t n, std::int64_t c, std::int64_t s,
                            float* d_dgamma, float* d_dbeta) {
  const long long rows = n * c;
  if (rows == 0) return;
  row_sums_kernel<<<grid_of((rows + kBlock / 32 - 1) / (kBlock / 32), "rows"), kBlock, 0, cuda_backend::stream()>>>(
      d_gy, d_dgamma ? d_xhat : nullptr, rows, s, d_dbeta, d_dgamma);
  CUDA_CHECK_LAUNCH();
}

// Examples go in rounds of `chunk`, as many as the workspace holds. Per round: unfold the chunk's
// inputs to cols [chunk, d, T] (skipped for 1×1 stride-1 kernels, where x_n already is [C, T]);
// then, in cuBLAS's column-major view where row-major cols_n [d, T] is a T×d matrix A_n and gy_n
// [O, T] is a T×O matrix G_n:
//   ghost:        Gram_a = A_n·A_nᵀ and Gram_g = G_n·G_nᵀ (T×T each), then ⟨Gram_a, Gram_g⟩_F;
//   materialized: dW_nᵀ = A_nᵀ·G_n (d×O column-major = row-major [O, d]), then its squared norm.
void conv2d_sq_norms(const Conv2dGeometry& g, bool ghost, const float* d_x, const float* d_gy, float* d_sq_norms,
                     float* d_per_example_dw, void* d_workspace, std::size_t workspace_bytes) {
  if (g.batch == 0) return;
  const long long patch = g.in_channels * g.kernel_h * g.kernel_w;
  const long long plane = g.out_height() * g.out_width();
  const long long x_stride = g.in_channels * g.height * g.width, y_stride = g.out_channels * plane;
  const bool pointwise = is_pointwise(g);
  const std::size_t per = conv2d_sq_norms_scratch_per_example(g, ghost, d_per_example_dw != nullptr);
  const long long chunk =
      per == 0 ? g.batch : std::min<long long>(g.batch, static_cast<long long>(workspace_bytes / per));
  AEGIS_CHECK(chunk >= 1, "conv2d_sq_norms: a workspace of " << workspace_bytes << " bytes holds no example (" << per
                                                             << " bytes each)");
  float* ws = static_cast<float*>(d_workspace);
  float* d_cols = ws;
  float* d_rest = pointwise ? ws : ws + chunk * patch * plane;
  const int t = as_int(plane, "output positions"), d = as_int(patch, "patch size"),
            o = as_int(g.out_channels, "channels");
  cublasHandle_t handle = cuda_backend::cublas_handle();
  const float one = 1.0f, zero = 0.0f;
  for (long long n0 = 0; n0 < g.batch; n0 += chunk) {
    const long long m = std::min(chunk, g.batch - n0);
    const int batch = as_int(m, "chunk");
    const float* a = d_x + n0 * x_stride;
    if (!pointwise) {
      Conv2dGeometry part = g;
      part.batch = m;
      conv2d_unfold(part, a, d_cols);
      a = d_cols;
    }
    const float* gy = d_gy + n0 * y_stride;
    if (ghost) {
      float* gram_a = d_rest;
      float* gram_g = d_rest + chunk * plane * plane;
      CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_T, t, t, d, &one, a, t, patch * plane, a, t,
                                             patch * plane, &zero, gram_a, t, plane * plane, batch));
      CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_T, t, t, o, &one, gy, t, y_stride, gy, t,
                                             y_stride, &zero, gram_g, t, plane * plane, batch));
      frobenius_dot_kernel<<<grid_of(m, "examples"), kBlock, 0, cuda_backend::stream()>>>(gram_a, gram_g, plane * plane,
                                                                                          d_sq_norms + n0);
      CUDA_CHECK_LAUNCH();
    } else {
      float* dw = d_per_example_dw ? d_per_example_dw + n0 * g.out_channels * patch : d_rest;
      CUBLAS_CHECK(cublasSgemmStridedBatched(handle, CUBLAS_OP_T, CUBLAS_OP_N, d, o, t, &one, a, t, patch * plane, gy,
                                             t, y_stride, &zero, dw, d, g.out_channels * patch, batch));
      row_sq_norms(dw, m, g.out_channels * patch, d_sq_norms + n0);
    }
  }
}

void clip_factors(const float* d_sq_norms, const float* d_mask, std::int64_t n, float max_norm, float* d_norms,
                  float* d_factors) {
  if (n == 0) return;
  clip_factors_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      d_sq_norms, d_mask, n, max_norm, d_norms, d_factors);
  CUDA_CHECK_LAUNCH();
}

void clip_summary(const float* d_norms, const float* d_mask, std::int64_t n, float max_norm, std::int64_t* d_summary) {
  if (n <= 0) return;
  clip_summary_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      d_norms, d_mask, n, max_norm, reinterpret_cast<unsigned long long*>(d_summary));
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
