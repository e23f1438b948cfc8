#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/round16.cuh"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

template <class T>
struct Sixteen;
template <>
struct Sixteen<__nv_bfloat16> {
  static __device__ __nv_bfloat16 round(float v) { return __float2bfloat16_rn(v); }
  static __device__ float widen(__nv_bfloat16 h) { return __bfloat162float(h); }
  static constexpr float kMaxFinite = 3.38953139e38f;  // (2 − 2⁻⁷)·2¹²⁷
};
template <>
struct Sixteen<__half> {
  static __device__ __half round(float v) { return __float2half_rn(v); }
  static __device__ float widen(__half h) { return __half2float(h); }
  static constexpr float kMaxFinite = 65504.0f;  // (2 − 2⁻¹⁰)·2¹⁵
};

template <class T>
__global__ void round_kernel(const float* in, T* out, long long n, unsigned long long* overflow) {
  unsigned long long lost = 0;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x) {
    const float v = in[i];
    const T h = Sixteen<T>::round(v);
    out[i] = h;
    lost += isfinite(v) && isinf(Sixteen<T>::widen(h));
  }
  if (overflow && lost) atomicAdd(overflow, lost);
}

template <class T>
__global__ void widen_kernel(const T* in, float* out, long long n, const float* bias, long long channels,
                             long long plane, unsigned long long* overflow) {
  unsigned long long lost = 0;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x) {
    const float v = Sixteen<T>::widen(in[i]);
    lost += fabsf(v) >= Sixteen<T>::kMaxFinite;  // false for NaN, which the caller's checks see
    out[i] = bias ? v + bias[(i / plane) % channels] : v;
  }
  if (overflow && lost) atomicAdd(overflow, lost);
}

void check_16_bit(MathPrecision precision, const char* what) {
  AEGIS_CHECK(is_16_bit(precision),
              what << ": precision " << math_precision_name(precision) << " has no 16-bit storage type");
}

}  // namespace

std::size_t packed_16bit_bytes(std::int64_t n) {
  return (static_cast<std::size_t>(n) * 2 + 255) / 256 * 256;
}

void round_to_16bit(MathPrecision precision, const float* d_in, void* d_out, std::int64_t n,
                    std::int64_t* d_overflow_count) {
  check_16_bit(precision, "round_to_16bit");
  if (n <= 0) return;
  constexpr int kBlock = 256;
  const unsigned grid = cuda_backend::grid_for(n, kBlock);
  auto* counter = reinterpret_cast<unsigned long long*>(d_overflow_count);
  if (precision == MathPrecision::Bf16)
    round_kernel<<<grid, kBlock, 0, cuda_backend::stream()>>>(d_in, static_cast<__nv_bfloat16*>(d_out), n, counter);
  else
    round_kernel<<<grid, kBlock, 0, cuda_backend::stream()>>>(d_in, static_cast<__half*>(d_out), n, counter);
  CUDA_CHECK_LAUNCH();
}

void widen_from_16bit(MathPrecision precision, const void* d_in, float* d_out, std::int64_t n, const float* d_bias,
                      std::int64_t channels, std::int64_t plane, std::int64_t* d_overflow_count) {
  check_16_bit(precision, "widen_from_16bit");
  if (n <= 0) return;
  AEGIS_CHECK(!d_bias || (channels >= 1 && plane >= 1),
              "widen_from_16bit: a bias needs channels " << channels << " ≥ 1 and plane " << plane << " ≥ 1");
  constexpr int kBlock = 256;
  const unsigned grid = cuda_backend::grid_for(n, kBlock);
  auto* counter = reinterpret_cast<unsigned long long*>(d_overflow_count);
  if (precision == MathPrecision::Bf16)
    widen_kernel<<<grid, kBlock, 0, cuda_backend::stream()>>>(static_cast<const __nv_bfloat16*>(d_in), d_out, n, d_bias,
                                                              channels, plane, counter);
  else
    widen_kernel<<<grid, kBlock, 0, cuda_backend::stream()>>>(static_cast<const __half*>(d_in), d_out, n, d_bias,
                                                              channels, plane, counter);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
