// CUDA backend of the sum over ranks (kernels/rank_sum.h): an NCCL all-gather into a [K, n]
// buffer, then one thread per element adds its K values in rank order in double (grid-stride
// loop, 256 threads per block), the CPU backend's arithmetic exactly; through the host when NCCL
// cannot serve the run.
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda_backend.h"
#include "core/mpi.h"
#include "kernels/cuda/nccl_comm.h"
#include "kernels/rank_sum.h"

namespace aegis::kernels::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void add_in_rank_order_kernel(const float* all, int ranks, long long n, double scale, float* out) {
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < n; i += 1LL * gridDim.x * blockDim.x) {
    double s = 0.0;
    for (int r = 0; r < ranks; ++r) s += static_cast<double>(all[r * n + i]);
    out[i] = static_cast<float>(s * scale);
  }
}

}  // namespace

void add_in_rank_order(const float* d_all, int ranks, std::int64_t n, double scale, float* d_out) {
  AEGIS_CHECK(ranks >= 1 && n >= 0, "add_in_rank_order: " << ranks << " ranks of " << n << " values");
  if (n == 0) return;
  add_in_rank_order_kernel<<<cuda_backend::grid_for(n, kBlock), kBlock, 0, cuda_backend::stream()>>>(d_all, ranks, n,
                                                                                                     scale, d_out);
  CUDA_CHECK_LAUNCH();
}

void sum_over_ranks(float* d_values, std::int64_t n, double scale) {
  AEGIS_CHECK(n >= 0, "sum_over_ranks: " << n << " values");
  const int ranks = mpi::world().size;
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  // Every rank reaches all_gather (it is collective even for n = 0, where it does no work).
  float* d_all =
      n > 0 ? static_cast<float*>(cuda_backend::allocate(bytes * static_cast<std::size_t>(ranks), device)) : nullptr;
  bool gathered = false;
  try {
    gathered = nccl::all_gather(d_values, d_all, n);
    if (gathered) add_in_rank_order(d_all, ranks, n, scale, d_values);
  } catch (...) {
    if (d_all) cuda_backend::release(d_all, device);
    throw;
  }
  if (d_all) cuda_backend::release(d_all, device);
  if (gathered) return;
  std::vector<float> host(static_cast<std::size_t>(n));
  if (n > 0) cuda_backend::copy(host.data(), d_values, bytes, cuda_backend::Copy::DeviceToHost);
  cpu::sum_over_ranks(host.data(), n, scale);
  if (n > 0) cuda_backend::copy(d_values, host.data(), bytes, cuda_backend::Copy::HostToDevice);
}

std::string rank_sum_route() {
  return nccl::route();
}

}  // namespace aegis::kernels::cuda
