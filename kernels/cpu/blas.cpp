#include "kernels/blas.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

namespace aegis::kernels::cpu {

void gemm(const GemmArgs& g, const float* a, const float* b, float* c) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {  // BLAS leaves C untouched when k = 0; the product is then beta * C
    for (std::int64_t i = 0; i < g.m * g.n; ++i) c[i] = g.beta == 0.0f ? 0.0f : g.beta * c[i];
    return;
  }
  const auto lda = static_cast<blasint>(g.trans_a ? g.m : g.k);
  const auto ldb = static_cast<blasint>(g.trans_b ? g.k : g.n);
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(g.m), static_cast<blasint>(g.n), static_cast<blasint>(g.k), g.alpha, a, lda, b, ldb,
              g.beta, c, static_cast<blasint>(g.n));
}

void add_bias(float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 16))
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = y + r * cols;
#pragma omp simd
    for (std::int64_t c = 0; c < cols; ++c) row[c] += bias[c];
  }
}

void sum_rows(const float* x, float* out, std::int64_t rows, std::int64_t cols, bool accumulate) {
  std::vector<double> acc(static_cast<std::size_t>(cols), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) acc[static_cast<std::size_t>(c)] += row[c];
  }
  for (std::int64_t c = 0; c < cols; ++c)
    out[c] = static_cast<float>(acc[static_cast<std::size_t>(c)] + (accumulate ? out[c] : 0.0f));
}

void gemm_strided_batched(const GemmArgs& g, const float* a, std::int64_t stride_a, const float* b,
                          std::int64_t stride_b, float* c, std::int64_t stride_c, std::int64_t batch) {
  // The products are independent: threads take whole products (OpenBLAS runs single-threaded
  // inside a parallel region), which beats threading each small product.
  const std::int64_t work = batch * g.m * g.n * std::max<std::int64_t>(g.k, 1);
#pragma omp parallel for schedule(static) if (batch > 1 && work > (1 << 16))
  for (std::int64_t i = 0; i < batch; ++i) gemm(g, a + i * stride_a, b + i * stride_b, c + i * stride_c);
}

std::string blas_description() {
  std::string config = openblas_get_config();
  while (!config.empty() && config.back() == ' ') config.pop_back();
  return config + " (" + std::to_string(openblas_get_num_threads()) + " threads)";
}

}  // namespace aegis::kernels::cpu
