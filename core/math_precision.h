// The precision of the matrix products and convolutions that the GPU's forward passes run in,
// a thread-local setting for inference paths that tolerate rounding (randomized-smoothing
// sampling). It changes only what the CUDA gemm (kernels/blas.h) and the CUDA convolution
// forward (kernels/conv.h) do with their operands; every other op, the CPU backend and the
// convolution's backward passes always compute in float32.
//   Fp32: IEEE float32 throughout (the default).
//   Tf32: cuBLAS/cuDNN may use TF32 tensor cores: operands rounded to a 10-bit mantissa inside the
//         library, fp32 range, fp32 accumulation.
//   Bf16: both operands of every matrix product / convolution are rounded to bfloat16 (8-bit
//         significand, fp32 range) before the product; products are summed in float32. A
//         convolution's output is rounded to bf16 once more (cuDNN's pseudo-bf16 configuration)
//         and widened back to float32 before its bias is added.
//   Fp16: the same with IEEE half (11-bit significand, |v| ≤ 65504): values beyond that range
//         become ±inf; such overflow is counted into the scope's device counter when one is set.
// Activations between layers stay float32 tensors: the mode saves no memory, only math time.
// It is meant for forward passes without an autograd tape; do not run backward passes inside a
// reduced-precision scope (see kernels/blas.h: a gemm cannot tell forward from backward).
#pragma once

#include <cstdint>
#include <string>

namespace aegis {

enum class MathPrecision { Fp32, Tf32, Bf16, Fp16 };

// "fp32", "tf32", "bf16", "fp16".
const char* math_precision_name(MathPrecision precision) noexcept;
// The inverse of math_precision_name (exact, lower case); InvalidArgument naming the text and
// the accepted names otherwise.
MathPrecision parse_math_precision(const std::string& name);
// Bf16 and Fp16: operands are stored in a 16-bit type before the product.
constexpr bool is_16_bit(MathPrecision precision) {
  return precision == MathPrecision::Bf16 || precision == MathPrecision::Fp16;
}

// This host thread's setting (Fp32 unless a MathPrecisionScope is active).
MathPrecision math_precision() noexcept;
// Device int64 to which the 16-bit roundings add the number of values that left the 16-bit type's
// range (finite float → ±inf, or a convolution output at or beyond the largest finite value);
// null when nobody counts.
std::int64_t* math_overflow_counter() noexcept;

// Sets the precision (and the overflow counter, a device pointer or null) for a scope and restores
// the previous ones when it ends. Scopes nest.
class MathPrecisionScope {
 public:
  explicit MathPrecisionScope(MathPrecision precision, std::int64_t* d_overflow_count = nullptr);
  ~MathPrecisionScope();
  MathPrecisionScope(const MathPrecisionScope&) = delete;
  MathPrecisionScope& operator=(const MathPrecisionScope&) = delete;

 private:
  MathPrecision m_previous;
  std::int64_t* m_previous_counter;
};

}  // namespace aegis
