// core/mpi.h for a build without MPI: always one process, rank 0 of 1. Messages have nobody to
// go to, so sending or receiving is refused; the collectives are the identity.
#include "core/error.h"
#include "core/mpi.h"

namespace aegis::mpi {

namespace {
constexpr const char* kNoMpi = "this build of aegis has no MPI (configure with -DAEGIS_MPI=ON)";
}  // namespace

const World& world() {
  static const World one;
  return one;
}

// Without MPI every process runs alone; a launcher's local rank still spreads such processes over
// a node's GPUs (a Slurm job of single-process shards, say).
int local_rank() {
  const int from_launcher = local_rank_from_environment();
  return from_launcher >= 0 ? from_launcher : 0;
}

std::string library_version() {
  return "";
}

void send(int, int, const std::vector<double>&) {
  AEGIS_THROW(DeviceError, "sending a message: " << kNoMpi);
}

Message receive(int, int) {
  AEGIS_THROW(DeviceError, "receiving a message: " << kNoMpi);
}

bool message_waiting(int, int) {
  return false;
}

void barrier() {}

std::vector<double> sum_over_ranks(const std::vector<double>& values) {
  return values;
}

void broadcast(std::vector<double>&, int) {}

void broadcast_bytes(std::vector<unsigned char>&, int) {}

std::vector<unsigned char> all_gather_bytes(const std::vector<unsigned char>& mine) {
  return mine;
}

void abort_run(int) noexcept {}

}  // namespace aegis::mpi
