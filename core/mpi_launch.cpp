// Whether a launcher started this process (core/mpi.h): the same test with or without MPI.
#include <cstdlib>

#include "core/mpi.h"

namespace aegis::mpi {

bool launched_by_launcher() {
  // Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; Slurm's srun sets PMI_SIZE (PMI-2) or PMIX_RANK (PMIx).
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

}  // namespace aegis::mpi
