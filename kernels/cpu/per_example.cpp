#include "kernels/per_example.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/blas.h"

namespace aegis::kernels {

namespace {
bool is_pointwise(const Conv2dGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride == 1 && g.padding == 0;
}
}  // namespace

std::size_t conv2d_sq_norms_scratch_per_example(const Conv2dGeometry& g, bool ghost, bool store_dw) {
  const std::int64_t patch = g.in_channels * g.kernel_h * g.kernel_w;
  const std::int64_t plane = g.out_height() * g.out_width();
  std::int64_t floats = is_pointwise(g) ? 0 : patch * plane;
  if (ghost)
    floats += 2 * plane * plane;
  else if (!store_dw)
    floats += g.out_channels * patch;
  return static_cast<std::size_t>(floats) * sizeof(float);
}

namespace cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 14;  // elements; below this a thread team costs more than it saves

float sum_squares(const float* x, std::int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (std::int64_t i = 0; i < n; ++i) acc += x[i] * x[i];
  return acc;
}

int example_threads(std::int64_t n) {
  return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(n, omp_get_max_threads())));
}
}  // namespace

void linear_sq_norms(const float* a, const float* g, std::int64_t n, std::int64_t in, std::int64_t out, bool with_bias,
                     float* sq_norms) {
  // ‖g_i a_iᵀ‖²_F = Σ_{o,j} g_o² a_j² = ‖a_i‖²·‖g_i‖².
#pragma omp parallel for schedule(static) if (n * (in + out) > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    const float aa = sum_squares(a + i * in, in), gg = sum_squares(g + i * out, out);
    sq_norms[i] += aa * gg + (with_bias ? gg : 0.0f);
  }
}

void row_sq_norms(const float* x, std::int64_t rows, std::int64_t cols, float* sq_norms) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t r = 0; r < rows; ++r) sq_norms[r] += sum_squares(x + r * cols, cols);
}

void scale_rows(const float* x, const float* factors, std::int64_t rows, std::int64_t cols, float* out) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t r = 0; r < rows; ++r) {
    const float c = factors[r];
    const float* xr = x + r * cols;
    float* yr = out + r * cols;
#pragma omp simd
    for (std::int64_t j = 0; j < cols; ++j) yr[j] = c * xr[j];
  }
}

void weighted_row_sum(const float* x, const float* factors, std::int64_t rows, std::int64_t cols, float* out) {
  if (cols == 0) return;
  if (rows == 0) {
    std::fill(out, out + cols, 0.0f);
    return;
  }
  cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<blasint>(rows), static_cast<blasint>(cols), 1.0f, x,
              static_cast<blasint>(cols), factors, 1, 0.0f, out, 1);
}

void conv_bias_per_example(const float* gy, std::int64_t n, std::int64_t o, std::int64_t t, float* out) {
#pragma omp parallel for schedule(static) if (n * o * t > kParallelMin)
  for (std::int64_t r = 0; r < n * o; ++r) {
    const float* row = gy + r * t;
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (std::int64_t j = 0; j < t; ++j) acc += row[j];
    out[r] = acc;
  }
}

void group_norm_per_example(const float* gy, const float* xhat, std::int64_t n, std::int64_t c, std::int64_t s,
                            float* dgamma, float* dbeta) {
#pragma omp parallel for schedule(static) if (n * c * s > kParallelMin)
  for (std::int64_t r = 0; r < n * c; ++r) {
    const float* g = gy + r * s;
    const float* h = xhat + r * s;
    float sum_g = 0.0f, sum_gh = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gh)
    for (std::int64_t j = 0; j < s; ++j) {
      sum_g += g[j];
      sum_gh += g[j] * h[j];
    }
    if (dgamma) dgamma[r] = sum_gh;
    if (dbeta) dbeta[r] = sum_g;
  }
}

// Per example n: A = unfold(x_n) [d, T] (row-major, as conv2d_unfold lays it out) and
// gy_n [O, T]. Ghost: ⟨AᵀA, gy_nᵀgy_n⟩_F from the upper triangles ssyrk forms, off-diagonal
// terms counted twice. Materialized: dw_n = gy_n·Aᵀ [O, d], then Σ dw_n².
void conv2d_sq_norms(const Conv2dGeometry& g, bool ghost, const float* x, const float* gy, float* sq_norms,
                     float* per_example_dw, void* /*workspace*/, std::size_t /*workspace_bytes*/) {
  const std::int64_t patch = g.in_channels * g.kernel_h * g.kernel_w;
  const std::int64_t plane = g.out_height() * g.out_width();
  const std::int64_t x_stride = g.in_channels * g.height * g.width, y_stride = g.out_channels * plane;
  const bool pointwise = is_pointwise(g);
  const int threads = example_threads(g.batch);
  // Per-thread scratch, allocated before the parallel region so that a failure throws here.
  const auto per_thread = conv2d_sq_norms_scratch_per_example(g, ghost, per_example_dw != nullptr) / sizeof(float);
  std::vector<float> scratch(per_thread * static_cast<std::size_t>(threads));
  Conv2dGeometry one = g;
  one.batch = 1;
  const auto t = static_cast<blasint>(plane);
#pragma omp parallel num_threads(threads)
  {
    float* mine = scratch.data() + per_thread * static_cast<std::size_t>(omp_get_thread_num());
    float* cols = mine;
    float* rest = pointwise ? mine : mine + patch * plane;
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < g.batch; ++n) {
      const float* x_n = x + n * x_stride;
      const float* gy_n = gy + n * y_stride;
      if (!pointwise) conv2d_unfold(one, x_n, cols);
      const float* a = pointwise ? x_n : cols;
      double total = 0.0;
      if (ghost) {
        float* gram_a = rest;
        float* gram_g = rest + plane * plane;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, t, static_cast<blasint>(patch), 1.0f, a, t, 0.0f, gram_a, t);
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, t, static_cast<blasint>(g.out_channels), 1.0f, gy_n, t, 0.0f,
                    gram_g, t);
        double diag = 0.0, upper = 0.0;
        for (std::int64_t i = 0; i < plane; ++i) {
          const float* ra = gram_a + i * plane;
          const float* rg = gram_g + i * plane;
          diag += static_cast<double>(ra[i]) * rg[i];
          float row = 0.0f;  // ≤ T terms in float, then the rows in double
#pragma omp simd reduction(+ : row)
          for (std::int64_t j = i + 1; j < plane; ++j) row += ra[j] * rg[j];
          upper += row;
        }
        total = diag + 2.0 * upper;
      } else {
        float* dw = per_example_dw ? per_example_dw + n * g.out_channels * patch : rest;
        gemm(GemmArgs{false, true, g.out_channels, patch, plane, 1.0f, 0.0f}, gy_n, a, dw);
        total = sum_squares(dw, g.out_channels * patch);
      }
      sq_norms[n] += static_cast<float>(total);
    }
  }
}

void clip_factors(const float* sq_norms, const float* mask, std::int64_t n, float max_norm, float* norms,
                  float* factors) {
  for (std::int64_t i = 0; i < n; ++i) {
    // A ghost norm is a difference of rounded terms and can come out a hair below zero.
    const float norm = std::sqrt(std::max(sq_norms[i], 0.0f));
    norms[i] = norm;
    const float c = std::min(1.0f, max_norm / (norm + 1e-6f));
    // A masked row gets exactly 0, even when its norm overflowed to Inf or NaN.
    factors[i] = !mask ? c : mask[i] == 0.0f ? 0.0f : mask[i] * c;
  }
}

void clip_summary(const float* norms, const float* mask, std::int64_t n, float max_norm, std::int64_t* summary) {
  for (std::int64_t i = 0; i < n; ++i) {
    if (mask && !(mask[i] >= 0.0f && mask[i] <= 1.0f)) ++summary[3];
    if (mask && mask[i] == 0.0f) continue;
    const float v = norms[i];
    if (!std::isfinite(v)) ++summary[0];
    if (v > max_norm) ++summary[1];
    if (v <= max_norm) ++summary[2];
  }
}

}  // namespace cpu
}  // namespace aegis::kernels
