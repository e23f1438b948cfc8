// Block-wide reductions in double for kernels that run one 256-thread block per example (the
// attack-step and attack-optimization families): warp shuffles, then every thread sums the
// per-warp partials in the same order, so all threads get the same value.
#pragma once

namespace aegis::kernels::cuda {

constexpr int kBlock = 256;  // a multiple of 32: the reductions assume whole warps
constexpr int kWarps = kBlock / 32;

// Σ over the block of every thread's v, returned to every thread. Contains __syncthreads(), so
// every thread of the block must call it; `scratch` (kWarps doubles) is free again on return.
__device__ inline double block_sum(double v, double* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kWarps; ++w) total += scratch[w];  // same order in every thread
  __syncthreads();
  return total;
}

// The maximum over the block of every thread's v (v ≥ 0), returned to every thread; as block_sum.
__device__ inline double block_max(double v, double* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double best = 0.0;
  for (int w = 0; w < kWarps; ++w) best = fmax(best, scratch[w]);
  __syncthreads();
  return best;
}

}  // namespace aegis::kernels::cuda
