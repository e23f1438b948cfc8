// kernels/cuda/nccl_comm.h over NCCL: one communicator over all ranks, made on first use with
// ncclCommInitRank (blocking), its unique id drawn by rank 0 and broadcast with MPI (core/mpi.h).
// NCCL needs a GPU per rank: the ranks first exchange their GPUs' UUIDs, and when two ranks share
// one (several ranks oversubscribing one GPU) every rank learns it from the same gathered bytes and
// the sums go through the host instead.
//
// libnccl.so.2 is opened with dlopen on first use, not linked: a process that loads aegis and
// then a framework with its own, newer NCCL (PyTorch's wheels bring one) would otherwise bind that
// framework to the toolkit's older library, whose symbols it lacks (the same SONAME is loaded
// once). nccl.h gives the types and signatures; without the library the sums go through the host.
#include <dlfcn.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/cuda/check.h"
#include "core/mpi.h"
#include "kernels/cuda/nccl_comm.h"

namespace aegis::kernels::cuda::nccl {

namespace {

// The NCCL calls aegis makes, looked up in the library opened at run time.
struct Api {
  decltype(&::ncclGetErrorString) get_error_string = nullptr;
  decltype(&::ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&::ncclCommInitRank) comm_init_rank = nullptr;
  decltype(&::ncclGetVersion) get_version = nullptr;
  decltype(&::ncclAllGather) all_gather = nullptr;
  std::string error;  // why the library could not be used ("" when it can)
};

const Api& api() {
  static const Api a = [] {
    Api r;
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) lib = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = dlerror();
      r.error = std::string("libnccl.so.2 not loadable: ") + (why ? why : "not found");
      return r;
    }
    const auto find = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (fn == nullptr && r.error.empty()) r.error = std::string("libnccl has no ") + name;
    };
    find(r.get_error_string, "ncclGetErrorString");
    find(r.get_unique_id, "ncclGetUniqueId");
    find(r.comm_init_rank, "ncclCommInitRank");
    find(r.get_version, "ncclGetVersion");
    find(r.all_gather, "ncclAllGather");
    return r;
  }();
  return a;
}

#define NCCL_CHECK(call)                                                                              \
  do {                                                                                                \
    ncclResult_t aegis_nccl_ = (call);                                                                \
    if (aegis_nccl_ != ncclSuccess)                                                                   \
      AEGIS_THROW(::aegis::DeviceError, #call << " failed: " << api().get_error_string(aegis_nccl_)); \
  } while (0)

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
  const Api& nccl = api();
  // Every rank makes the same choice or none uses NCCL: a rank without the library says so.
  std::vector<unsigned char> ok{static_cast<unsigned char>(nccl.error.empty() ? 1 : 0)};
  const std::vector<unsigned char> all_ok = mpi::all_gather_bytes(ok);
  if (std::find(all_ok.begin(), all_ok.end(), 0) != all_ok.end()) {
    c.route =
        "through the host (" + (nccl.error.empty() ? std::string("another rank cannot load NCCL") : nccl.error) + ")";
    return c;
  }
  if (ranks_share_a_gpu()) {
    c.route = "through the host (ranks share a GPU; NCCL needs one GPU per rank)";
    return c;
  }
  ncclUniqueId id{};
  if (world.rank == 0) NCCL_CHECK(nccl.get_unique_id(&id));
  std::vector<unsigned char> bytes(sizeof id);
  std::memcpy(bytes.data(), &id, sizeof id);
  mpi::broadcast_bytes(bytes, 0);
  std::memcpy(&id, bytes.data(), sizeof id);
  NCCL_CHECK(nccl.comm_init_rank(&c.comm, world.size, id, world.rank));
  int version = 0;
  NCCL_CHECK(nccl.get_version(&version));
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
  NCCL_CHECK(api().all_gather(d_values, d_all, static_cast<std::size_t>(n), ncclFloat, c.comm, cuda_backend::stream()));
  return true;
}

std::string route() {
  return communicator().route;
}

}  // namespace aegis::kernels::cuda::nccl
