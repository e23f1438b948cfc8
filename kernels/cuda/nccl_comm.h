// Internal to the CUDA backend of kernels/rank_sum.h: the NCCL communicator of this run.
// kernels/cuda/nccl/comm.cpp implements it over NCCL when the build found it;
// kernels/cuda/no_nccl/comm.cpp says that there is none, so rank_sum.cu needs no #if.
#pragma once

#include <cstdint>
#include <string>

namespace aegis::kernels::cuda::nccl {

// Gathers every rank's n floats at d_values into d_all ([K, n], rank r's at row r), ordered on this
// thread's stream. False, having done nothing, when NCCL cannot serve this run: not compiled in, or
// two ranks share a GPU (the same answer on every rank). Collective: the first call makes the
// communicator (rank 0's unique id broadcast with MPI), so every rank must call in the same order.
bool all_gather(const float* d_values, float* d_all, std::int64_t n);

// "nccl 2.x.y, K ranks" when all_gather uses NCCL, else why not. Collective like all_gather.
std::string route();

}  // namespace aegis::kernels::cuda::nccl
