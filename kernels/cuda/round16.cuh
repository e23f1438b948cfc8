// Internal to the CUDA backend: the 16-bit operand storage of the bf16/fp16 forward modes
// (core/math_precision.h), shared by the gemm (blas.cu) and the convolution forward (conv.cu).
//   round_to_16bit:   float32 → bf16 or fp16, round to nearest even (__float2bfloat16_rn,
//                     __float2half_rn); values beyond the type's range become ±inf.
//   widen_from_16bit: bf16 or fp16 → float32 (exact), optionally adding a bias per channel of an
//                     NCHW tensor in float32.
// Both are grid-stride loops, one element per thread per step, so loads and stores coalesce.
// Overflow: given a device counter, each thread counts the values it saw leave the 16-bit range
// (round: a finite float that became ±inf; widen: |v| ≥ the largest finite 16-bit value, which
// also catches a library that saturates instead of producing inf) and adds its count with one
// atomicAdd, so a correct run pays one predicated add per element and no atomics.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/cuda/stream_scratch.h"
#include "core/math_precision.h"

namespace aegis::kernels::cuda {

using cuda_backend::StreamScratch;  // core/cuda/stream_scratch.h

// Bytes of n 16-bit values rounded up to 256, so that arrays packed one after another into one
// scratch block each start as aligned as the block (tensor-core kernels want ≥ 16-byte alignment).
std::size_t packed_16bit_bytes(std::int64_t n);

// d_out[i] = round(d_in[i]) in the 16-bit type of `precision` (Bf16 or Fp16), i < n.
void round_to_16bit(MathPrecision precision, const float* d_in, void* d_out, std::int64_t n,
                    std::int64_t* d_overflow_count);
// d_out[i] = float(d_in[i]) (+ d_bias[(i / plane) % channels] when d_bias is not null), i < n.
void widen_from_16bit(MathPrecision precision, const void* d_in, float* d_out, std::int64_t n, const float* d_bias,
                      std::int64_t channels, std::int64_t plane, std::int64_t* d_overflow_count);

}  // namespace aegis::kernels::cuda
