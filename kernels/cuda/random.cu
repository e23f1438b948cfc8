#include "kernels/random.h"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

__global__ void fill_uniform_kernel(float* out, long long n, philox::Key key, unsigned long long offset, float lo,
                                    float width) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    out[i] = lo + width * philox::uniform(key, offset + static_cast<unsigned long long>(i));
}

__global__ void fill_normal_kernel(float* out, long long n, philox::Key key, unsigned long long offset, float mean,
                                   float std) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    out[i] = static_cast<float>(mean + std * philox::normal_double(key, offset + static_cast<unsigned long long>(i)));
}

__global__ void fill_laplace_kernel(float* out, long long n, philox::Key key, unsigned long long offset, float scale) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x)
    out[i] = static_cast<float>(scale * philox::laplace_double(key, offset + static_cast<unsigned long long>(i)));
}

}  // namespace

void fill_uniform(float* d_out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float lo, float hi) {
  if (n <= 0) return;
  constexpr int kBlock = 256;
  fill_uniform_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(d_out, n, key, offset,
                                                                                                  lo, hi - lo);
  CUDA_CHECK_LAUNCH();
}

void fill_normal(float* d_out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float mean, float std) {
  if (n <= 0) return;
  constexpr int kBlock = 256;
  fill_normal_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(d_out, n, key, offset,
                                                                                                 mean, std);
  CUDA_CHECK_LAUNCH();
}

void fill_laplace(float* d_out, std::int64_t n, const philox::Key& key, std::uint64_t offset, float scale) {
  if (n <= 0) return;
  constexpr int kBlock = 256;
  fill_laplace_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(d_out, n, key, offset,
                                                                                                  scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
