// Whether a launcher started this process, and the solo scopes (core/mpi.h): the same with or
// without MPI.
#include <atomic>
#include <cstdlib>

#include "core/mpi.h"

namespace aegis::mpi {

bool launched_by_launcher() {
  // Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; Slurm's srun sets PMI_SIZE (PMI-2) or PMIX_RANK (PMIx).
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(name) != nullptr) return true;
  return false;
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
