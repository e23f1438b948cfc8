// Dense matrix products and the bias helpers that go with them, row-major throughout.
//   gemm:      C[m,n] = alpha * op(A)[m,k] · op(B)[k,n] + beta * C   (op = transpose or not)
//   add_bias:  Y[rows, cols] += b[cols]
//   sum_rows:  out[cols] (+)= Σ_r X[r, cols]
//   gemm_strided_batched: C_i = alpha * op(A_i) · op(B_i) + beta * C_i for i < batch, with
//              A_i = a + i·stride_a (and so on); a stride may be 0 (one operand shared by all).
//              CPU: one OpenBLAS sgemm per product, OpenMP over the batch (each sgemm single-
//              threaded inside the loop). CUDA: one cublasSgemmStridedBatched call.
// CPU: OpenBLAS sgemm. CUDA: cuBLAS sgemm (row-major handled by computing Cᵀ = op(B)ᵀ op(A)ᵀ),
// and one-thread-per-column reductions for the bias.
// The CUDA gemm follows this thread's MathPrecision (core/math_precision.h): Tf32 lets cuBLAS
// use TF32 tensor cores; Bf16/Fp16 round op(A) and op(B) to that 16-bit type in stream-ordered
// scratch and multiply them with cublasGemmEx, float32 accumulation and float32 C. A gemm cannot
// tell a forward from a backward product, so the mode applies to every gemm issued in its scope:
// it is for forward passes without a tape. The CPU gemm and the bias helpers always use float32.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"

namespace aegis::kernels {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
};

namespace cpu {
void gemm(const GemmArgs& g, const float* a, const float* b, float* c);
void add_bias(float* y, const float* bias, std::int64_t rows, std::int64_t cols);
void sum_rows(const float* x, float* out, std::int64_t rows, std::int64_t cols, bool accumulate);
void gemm_strided_batched(const GemmArgs& g, const float* a, std::int64_t stride_a, const float* b,
                          std::int64_t stride_b, float* c, std::int64_t stride_c, std::int64_t batch);
// "OpenBLAS 0.3.21 ... (N threads)": which BLAS the CPU backend runs on.
std::string blas_description();
}  // namespace cpu

#if AEGIS_HAS_CUDA
namespace cuda {
void gemm(const GemmArgs& g, const float* d_a, const float* d_b, float* d_c);
void add_bias(float* d_y, const float* d_bias, std::int64_t rows, std::int64_t cols);
void sum_rows(const float* d_x, float* d_out, std::int64_t rows, std::int64_t cols, bool accumulate);
void gemm_strided_batched(const GemmArgs& g, const float* d_a, std::int64_t stride_a, const float* d_b,
                          std::int64_t stride_b, float* d_c, std::int64_t stride_c, std::int64_t batch);
}  // namespace cuda
#endif

}  // namespace aegis::kernels
