#include "kernels/elementwise.h"
#include "core/cuda/check.h"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;

#define AEGIS_GRID_STRIDE(i, n) \
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < (n); i += 1LL * gridDim.x * blockDim.x)

__global__ void fill_kernel(float* out, float value, long long n) {
  AEGIS_GRID_STRIDE(i, n) out[i] = value;
}
__global__ void add_kernel(const float* a, const float* b, float* out, long long n) {
  AEGIS_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}
__global__ void axpy_kernel(float alpha, const float* x, float* y, long long n) {
  AEGIS_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
__global__ void scale_kernel(float alpha, float* x, long long n) {
  AEGIS_GRID_STRIDE(i, n) x[i] *= alpha;
}
__global__ void activation_forward_kernel(Activation f, const float* x, float* y, long long n) {
  AEGIS_GRID_STRIDE(i, n) {
    const float v = x[i];
    if (f == Activation::ReLU) {
      y[i] = v > 0.0f ? v : 0.0f;
    } else if (f == Activation::Tanh) {
      y[i] = tanhf(v);
    } else if (f == Activation::Softplus) {
      y[i] = fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v)));
    } else {
      const float e = expf(-fabsf(v));
      y[i] = v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
  }
}
__global__ void activation_backward_kernel(Activation f, const float* y, const float* dy, float* dx, long long n) {
  AEGIS_GRID_STRIDE(i, n) {
    const float o = y[i];
    if (f == Activation::ReLU) dx[i] = o > 0.0f ? dy[i] : 0.0f;
    else if (f == Activation::Tanh) dx[i] = dy[i] * (1.0f - o * o);
    else if (f == Activation::Softplus) dx[i] = dy[i] * -expm1f(-o);
    else dx[i] = dy[i] * o * (1.0f - o);
  }
}
__global__ void count_nonfinite_kernel(const float* x, long long n, unsigned long long* count) {
  __shared__ unsigned int block_count;
  if (threadIdx.x == 0) block_count = 0;
  __syncthreads();
  unsigned int mine = 0;
  AEGIS_GRID_STRIDE(i, n) mine += isfinite(x[i]) ? 0u : 1u;
  if (mine) atomicAdd(&block_count, mine);
  __syncthreads();
  if (threadIdx.x == 0 && block_count) atomicAdd(count, static_cast<unsigned long long>(block_count));
}

unsigned grid(long long n) {
  return cuda_backend::grid_for(n, kBlock);
}

}  // namespace

void fill(float* d_out, float value, std::int64_t n) {
  if (n <= 0) return;
  fill_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(d_out, value, n);
  CUDA_CHECK_LAUNCH();
}
void add(const float* d_a, const float* d_b, float* d_out, std::int64_t n) {
  if (n <= 0) return;
  add_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(d_a, d_b, d_out, n);
  CUDA_CHECK_LAUNCH();
}
void axpy(float alpha, const float* d_x, float* d_y, std::int64_t n) {
  if (n <= 0) return;
  axpy_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(alpha, d_x, d_y, n);
  CUDA_CHECK_LAUNCH();
}
void scale(float alpha, float* d_x, std::int64_t n) {
  if (n <= 0) return;
  scale_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(alpha, d_x, n);
  CUDA_CHECK_LAUNCH();
}
void activation_forward(Activation f, const float* d_x, float* d_y, std::int64_t n) {
  if (n <= 0) return;
  activation_forward_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(f, d_x, d_y, n);
  CUDA_CHECK_LAUNCH();
}
void activation_backward(Activation f, const float* d_y, const float* d_dy, float* d_dx, std::int64_t n) {
  if (n <= 0) return;
  activation_backward_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(f, d_y, d_dy, d_dx, n);
  CUDA_CHECK_LAUNCH();
}
std::int64_t count_nonfinite(const float* d_x, std::int64_t n) {
  if (n <= 0) return 0;
  unsigned long long* d_count = nullptr;
  CUDA_CHECK(cudaMallocAsync(&d_count, sizeof(unsigned long long), cuda_backend::stream()));
  CUDA_CHECK(cudaMemsetAsync(d_count, 0, sizeof(unsigned long long), cuda_backend::stream()));
  count_nonfinite_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(d_x, n, d_count);
  CUDA_CHECK_LAUNCH();
  unsigned long long h_count = 0;
  CUDA_CHECK(cudaMemcpyAsync(&h_count, d_count, sizeof(h_count), cudaMemcpyDeviceToHost, cuda_backend::stream()));
  CUDA_CHECK(cudaFreeAsync(d_count, cuda_backend::stream()));
  CUDA_CHECK(cudaStreamSynchronize(cuda_backend::stream()));
  return static_cast<std::int64_t>(h_count);
}
void count_nonfinite_into(const float* d_x, std::int64_t n, std::int64_t* d_counter) {
  if (n <= 0) return;
  // A two's-complement int64 and an unsigned 64-bit integer add alike (counts stay below 2^63).
  static_assert(sizeof(std::int64_t) == sizeof(unsigned long long), "64-bit counter");
  count_nonfinite_kernel<<<grid(n), kBlock, 0, cuda_backend::stream()>>>(
      d_x, n, reinterpret_cast<unsigned long long*>(d_counter));
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
