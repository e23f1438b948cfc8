// Random fills from the Philox generator (core/philox.h): element i of the output is a pure
// function of (key, offset + i), so CPU and CUDA fill identical values and any slice of a large
// draw can be regenerated alone. CUDA: one thread per element, grid-stride loop.
#pragma once

#include <cstdint>

#include "core/config.h"
#include "core/philox.h"

namespace aegis::kernels {
namespace cpu {
// out[i] = lo + (hi - lo) * U(key, offset + i)
void fill_uniform(float* out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float lo, float hi);
// out[i] = mean + std * N(key, offset + i)
void fill_normal(float* out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float mean, float std);
// out[i] = scale * Laplace(key, offset + i), Laplace(0, 1) as philox::laplace_double
void fill_laplace(float* out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float scale);
}  // namespace cpu
#if AEGIS_HAS_CUDA
namespace cuda {
void fill_uniform(float* d_out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float lo, float hi);
void fill_normal(float* d_out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float mean, float std);
void fill_laplace(float* d_out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float scale);
}  // namespace cuda
#endif
}  // namespace aegis::kernels
