// The processes of one run started by mpirun or srun, and the few messages aegis sends between
// them: the only code that knows about MPI. core/mpi/world.cpp implements it over MPI when the
// build has it (-DAEGIS_MPI); core/no_mpi/world.cpp is the same interface for one process, so
// code above needs no #if and a build without MPI runs as it always did.
//
// MPI is initialized on the first call of world(), and only when the environment says that the
// process was started by a launcher (OMPI_COMM_WORLD_SIZE from Open MPI's mpirun, PMI_SIZE or
// PMIX_RANK from Slurm's srun): a plain `aegis ...` never loads an MPI runtime and is rank 0 of 1.
// MPI is finalized when the program exits. A host program that initialized MPI first (Python
// with mpi4py) keeps it: aegis joins its MPI_COMM_WORLD and leaves finalizing to the host. Only
// the thread that called world() may send or receive (MPI_THREAD_FUNNELED); the OpenMP threads
// inside a rank never do.
//
// Payloads are vectors of double: chunk indices, certificates (a class index is exact in a
// double) and gradient sums, which are summed in double in rank order (sum_over_ranks); and
// bytes, for what is no number (NCCL's unique id, a GPU's UUID: kernels/rank_sum.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace aegis::mpi {

// True when this build links MPI.
constexpr bool compiled() {
  return AEGIS_HAS_MPI != 0;
}

// True when a launcher started this process (the environment variables above are set).
bool launched_by_launcher();

struct World {
  int rank = 0;
  int size = 1;
  bool initialized = false;  // MPI is running (never in a build without MPI)
};
// This process's place in the run; initializes MPI on first use as described above. Inside a
// SoloScope: rank 0 of 1.
const World& world();

// While one lives, this process is a run of its own for the code it calls: world() says rank 0
// of 1, so that code's collectives are the identity and its writes are its own (a data-parallel
// DP step reduces nothing; a model file is saved by the process that trained it). A work farm
// (core/work_farm.h) does each item inside one, since an item is one process's work. Process-wide
// (only the thread that called world() communicates); scopes nest.
class SoloScope {
 public:
  SoloScope();
  ~SoloScope();
  SoloScope(const SoloScope&) = delete;
  SoloScope& operator=(const SoloScope&) = delete;
};
// Whether a SoloScope is alive.
bool solo();

// The MPI library's own version line ("" without MPI).
std::string library_version();

// This process's rank among the ranks on its node (0 in a plain process): from the launcher's
// environment (OMPI_COMM_WORLD_LOCAL_RANK from Open MPI's mpirun, SLURM_LOCALID from srun), else,
// under MPI, its rank among the processes that share its memory (MPI_Comm_split_type with
// MPI_COMM_TYPE_SHARED; collective, so on first use every rank must ask, as world() does).
int local_rank();
// The launcher's local rank alone: OMPI_COMM_WORLD_LOCAL_RANK, else SLURM_LOCALID; -1 when neither is
// set to a number ≥ 0.
int local_rank_from_environment();
// The GPU a rank uses when its device is `cuda` or `auto` without a number: local rank mod the
// visible GPU count, so the ranks of a node spread over its GPUs (and one GPU made visible per rank,
// as srun --gpus-per-task does, is GPU 0 of every rank). InvalidArgument for a negative local rank
// or fewer than one GPU. A pure function, tested without a GPU.
int gpu_for_local_rank(int local_rank, int gpu_count);

constexpr int kAnySource = -1;

struct Message {
  int source = 0;
  int tag = 0;
  std::vector<double> data;
};

// Blocking point-to-point messages (size > 1 only; DeviceError otherwise). Messages between
// two ranks with the same tag arrive in the order they were sent.
void send(int dest, int tag, const std::vector<double>& data);
Message receive(int source, int tag);  // source: a rank or kAnySource
// True when a message with this tag waits from `source` (kAnySource: any rank); never blocks.
bool message_waiting(int source, int tag);

// Collectives: every rank calls them in the same order. (With one process they return at once.)
void barrier();
// Σ over ranks of `values` (the same length on every rank), identical on every rank: each
// element is added in rank order (in double), so the result does not depend on MPI's reduction
// tree. Rank b adds the b-th block of the vector and the blocks are then gathered everywhere
// (a reduce-scatter and an all-gather: each rank moves 2·(K−1)/K of the vector).
std::vector<double> sum_over_ranks(const std::vector<double>& values);
// Rank `root`'s `values` on every rank.
void broadcast(std::vector<double>& values, int root);
// The same for bytes (`bytes` has the same length on every rank).
void broadcast_bytes(std::vector<unsigned char>& bytes, int root);
// Every rank's `mine` (the same length on every rank), concatenated in rank order, on every rank.
std::vector<unsigned char> all_gather_bytes(const std::vector<unsigned char>& mine);

// Ends every rank of the run with this exit status (MPI_Abort); returns when there is no MPI run.
// For a front end whose rank failed: the others would otherwise wait for it forever.
void abort_run(int status) noexcept;

}  // namespace aegis::mpi
