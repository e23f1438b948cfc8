#include <climits>

#include "kernels/blas.h"
#include "kernels/cuda/round16.cuh"
#include "core/cuda/check.h"
#include "core/cuda_backend.h"

namespace aegis::kernels::cuda {
namespace {

// cuBLAS takes 32-bit sizes and leading dimensions: a larger one is an error, not a wrapped int.
int blas_int(std::int64_t v, const char* what) {
  AEGIS_CHECK_AS(ShapeError, v >= 0 && v <= INT_MAX,
                 "gemm on CUDA: " << what << " = " << v << " exceeds cuBLAS's 32-bit size range; split the product");
  return static_cast<int>(v);
}

__global__ void add_bias_kernel(float* y, const float* bias, long long rows, long long cols) {
  const long long total = rows * cols;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < total; i += 1LL * gridDim.x * blockDim.x)
    y[i] += bias[i % cols];
}

// One block per column chunk of 32 columns; threads of a warp read consecutive columns
// (coalesced) and the blockDim.y rows are reduced through shared memory.
__global__ void sum_rows_kernel(const float* x, float* out, long long rows, long long cols, bool accumulate) {
  __shared__ float partial[8][33];
  const long long c = blockIdx.x * 32LL + threadIdx.x;
  float acc = 0.0f;
  if (c < cols)
    for (long long r = threadIdx.y; r < rows; r += blockDim.y) acc += x[r * cols + c];
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.0f;
    for (int j = 0; j < 8; ++j) total += partial[j][threadIdx.x];
    out[c] = accumulate ? out[c] + total : total;
  }
}

// op(A)·op(B) with both operands rounded to bf16 or fp16 first (core/math_precision.h): A and B
// are rounded element for element, in their own layouts, into one stream-ordered scratch block
// (no host synchronization, so it stays capturable in a CUDA graph), and cublasGemmEx multiplies
// them with float32 accumulation (CUBLAS_COMPUTE_32F) into the float32 C, alpha and beta float.
void gemm_16bit(const GemmArgs& g, MathPrecision precision, const float* d_a, const float* d_b, float* d_c, int lda,
                int ldb) {
  const std::int64_t a_count = g.m * g.k, b_count = g.k * g.n;
  const std::size_t a_bytes = packed_16bit_bytes(a_count);
  const StreamScratch scratch(a_bytes + packed_16bit_bytes(b_count));
  void* d_a16 = scratch.get();
  void* d_b16 = static_cast<char*>(scratch.get()) + a_bytes;
  round_to_16bit(precision, d_a, d_a16, a_count, math_overflow_counter());
  round_to_16bit(precision, d_b, d_b16, b_count, math_overflow_counter());
  const cudaDataType_t type = precision == MathPrecision::Bf16 ? CUDA_R_16BF : CUDA_R_16F;
  cublasHandle_t handle = cuda_backend::cublas_handle();
  // Tensor cores on 16-bit inputs; every partial sum, split-K reductions included, in float32.
  CUBLAS_CHECK(cublasSetMathMode(
      handle, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
  CUBLAS_CHECK(cublasGemmEx(handle, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                            blas_int(g.n, "n"), blas_int(g.m, "m"), blas_int(g.k, "k"), &g.alpha, d_b16, type, ldb,
                            d_a16, type, lda, &g.beta, d_c, CUDA_R_32F, blas_int(g.n, "n"), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void gemm(const GemmArgs& g, const float* d_a, const float* d_b, float* d_c) {
  if (g.m == 0 || g.n == 0) return;
  // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands.
  const int lda = blas_int(g.trans_a ? g.m : g.k, "lda");
  const int ldb = blas_int(g.trans_b ? g.k : g.n, "ldb");
  const MathPrecision precision = math_precision();
  // k = 0 leaves C = beta·C: no operand to round, the float32 call does it.
  if (is_16_bit(precision) && g.k > 0) {
    gemm_16bit(g, precision, d_a, d_b, d_c, lda, ldb);
    return;
  }
  cublasHandle_t handle = cuda_backend::cublas_handle();
  // TF32 tensor cores only inside a MathPrecisionScope(Tf32) (reduced-precision inference).
  CUBLAS_CHECK(
      cublasSetMathMode(handle, precision == MathPrecision::Tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  CUBLAS_CHECK(cublasSgemm(handle, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                           blas_int(g.n, "n"), blas_int(g.m, "m"), blas_int(g.k, "k"), &g.alpha, d_b, ldb, d_a, lda,
                           &g.beta, d_c, blas_int(g.n, "n")));
}

void gemm_strided_batched(const GemmArgs& g, const float* d_a, std::int64_t stride_a, const float* d_b,
                          std::int64_t stride_b, float* d_c, std::int64_t stride_c, std::int64_t batch) {
  if (g.m == 0 || g.n == 0 || batch == 0) return;
  const int lda = blas_int(g.trans_a ? g.m : g.k, "lda");
  const int ldb = blas_int(g.trans_b ? g.k : g.n, "ldb");
  cublasHandle_t handle = cuda_backend::cublas_handle();
  // Float32 throughout: the batched products serve per-example gradients (training), which the
  // reduced-precision modes of gemm are not for.
  CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
  // Row-major C_i = op(A_i)·op(B_i) is column-major C_iᵀ = op(B_i)ᵀ·op(A_i)ᵀ, as in gemm.
  CUBLAS_CHECK(cublasSgemmStridedBatched(handle, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, blas_int(g.n, "n"), blas_int(g.m, "m"),
                                         blas_int(g.k, "k"), &g.alpha, d_b, ldb, static_cast<long long>(stride_b), d_a,
                                         lda, static_cast<long long>(stride_a), &g.beta, d_c, blas_int(g.n, "n"),
                                         static_cast<long long>(stride_c), blas_int(batch, "batch")));
}

void add_bias(float* d_y, const float* d_bias, std::int64_t rows, std::int64_t cols) {
  if (rows * cols == 0) return;
  add_bias_kernel<<<cuda_backend::grid_for(rows * cols, 256), 256, 0, cuda_backend::stream()>>>(d_y, d_bias, rows,
                                                                                                  cols);
  CUDA_CHECK_LAUNCH();
}

void sum_rows(const float* d_x, float* d_out, std::int64_t rows, std::int64_t cols, bool accumulate) {
  if (cols == 0) return;
  const dim3 block(32, 8);
  AEGIS_CHECK_AS(ShapeError, (cols + 31) / 32 <= INT_MAX, "sum_rows on CUDA: " << cols << " columns exceed the grid");
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32));
  sum_rows_kernel<<<grid, block, 0, cuda_backend::stream()>>>(d_x, d_out, rows, cols, accumulate);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
