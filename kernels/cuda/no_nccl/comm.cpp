// kernels/cuda/nccl_comm.h for a CUDA build without NCCL: device sums go through the host.
#include "kernels/cuda/nccl_comm.h"

namespace aegis::kernels::cuda::nccl {

bool all_gather(const float*, float*, std::int64_t) {
  return false;
}

std::string route() {
  return "through the host (this build has no NCCL)";
}

}  // namespace aegis::kernels::cuda::nccl
