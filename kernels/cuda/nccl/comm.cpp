// kernels/cuda/nccl_comm.h over NCCL: one communicator over all ranks, made on first use with
// ncclCommInitRank (blocking), its unique id drawn by rank 0 and broadcast with MPI (core/mpi.h).
// NCCL needs a GPU per rank: the ranks first exchange their GPUs' UUIDs, and when two ranks share
// one (several ranks oversubscribing one GPU) every rank learns it from the same gathered bytes and
// the sums go through the host instead.
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cuda/check.h"
#include "core/mpi.h"
#include "kernels/cuda/nccl_comm.h"

#define NCCL_CHECK(call)                                                                          \
  do {                                                                                            \
    ncclResult_t aegis_nccl_ = (call);                                                            \
    if (aegis_nccl_ != ncclSuccess)                                                               \
      AEGIS_THROW(::aegis::DeviceError, #call << " failed: " << ncclGetErrorString(aegis_nccl_)); \
  } while (0)

namespace aegis::kernels::cuda::nccl {

namespace {

struct Communicator {
  ncclComm_t comm = nullptr;
  std::string route;
};

// UUIDs of every rank's current GPU, in rank order; true when two are the same.
bool ranks_share_a_gpu() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  constexpr std::size_t kUuid = sizeof prop.uuid.bytes;
  std::vector<unsigned char> mine(kUuid);
  std::memcpy(mine.data(), prop.uuid.bytes, kUuid);
  const std::vector<unsigned char> all = mpi::all_gather_bytes(mine);
  const std::size_t ranks = all.size() / kUuid;
  for (std::size_t a = 0; a < ranks; ++a)
    for (std::size_t b = a + 1; b < ranks; ++b)
      if (std::equal(all.begin() + a * kUuid, all.begin() + (a + 1) * kUuid, all.begin() + b * kUuid)) return true;
  return false;
}

Communicator make_communicator() {
  Communicator c;
  const mpi::World& world = mpi::world();
  if (ranks_share_a_gpu()) {
    c.route = "through the host (ranks share a GPU; NCCL needs one GPU per rank)";
    return c;
  }
  ncclUniqueId id{};
  if (world.rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  std::vector<unsigned char> bytes(sizeof id);
  std::memcpy(bytes.data(), &id, sizeof id);
  mpi::broadcast_bytes(bytes, 0);
  std::memcpy(&id, bytes.data(), sizeof id);
  NCCL_CHECK(ncclCommInitRank(&c.comm, world.size, id, world.rank));
  int version = 0;
  NCCL_CHECK(ncclGetVersion(&version));
  // NCCL_VERSION_CODE ≥ 2.9 encodes major·10000 + minor·100 + patch.
  c.route = "nccl " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
            std::to_string(version % 100) + ", " + std::to_string(world.size) + " rank(s)";
  return c;
}

// Made once per process; never destroyed: ncclCommDestroy from a static's destructor would run
// after the CUDA runtime's own teardown has begun. The process's exit releases it.
const Communicator& communicator() {
  static const Communicator* c = new Communicator(make_communicator());
  return *c;
}

}  // namespace

bool all_gather(const float* d_values, float* d_all, std::int64_t n) {
  const Communicator& c = communicator();
  if (c.comm == nullptr) return false;
  if (n == 0) return true;
  NCCL_CHECK(ncclAllGather(d_values, d_all, static_cast<std::size_t>(n), ncclFloat, c.comm, cuda_backend::stream()));
  return true;
}

std::string route() {
  return communicator().route;
}

}  // namespace aegis::kernels::cuda::nccl
