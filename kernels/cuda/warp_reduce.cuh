// Warp-wide reductions in float by butterfly shuffles: every lane of a full warp gets the result.
// For kernels that give each row one warp (softmax, cross-entropy) or sum a few values per warp.
#pragma once

namespace aegis::kernels::cuda {

__device__ inline float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

}  // namespace aegis::kernels::cuda
