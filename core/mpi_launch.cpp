// Whether a launcher started this process, which GPU a rank takes, and the solo scopes
// (core/mpi.h): the same with or without MPI.
#include <atomic>
#include <cstdlib>

#include "core/error.h"
#include "core/mpi.h"

namespace aegis::mpi {

bool launched_by_launcher() {
  // Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; Slurm's srun sets PMI_SIZE (PMI-2) or PMIX_RANK (PMIx).
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

int local_rank_from_environment() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"}) {
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0') continue;
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    if (*end == '\0' && value >= 0 && value <= 1 << 20) return static_cast<int>(value);
  }
  return -1;
}

int gpu_for_local_rank(int local_rank, int gpu_count) {
  AEGIS_CHECK(local_rank >= 0, "local rank " << local_rank << " must be ≥ 0");
  AEGIS_CHECK(gpu_count >= 1, "choosing a GPU for local rank " << local_rank << ": " << gpu_count
                                                               << " GPUs visible (at least 1 needed)");
  return local_rank % gpu_count;
}

namespace {
std::atomic<int> solo_depth{0};
}  // namespace

SoloScope::SoloScope() {
  ++solo_depth;
}

SoloScope::~SoloScope() {
  --solo_depth;
}

bool solo() {
  return solo_depth.load() > 0;
}

}  // namespace aegis::mpi
