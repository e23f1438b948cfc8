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

void abort_run(int) noexcept {}

}  // namespace aegis::mpi
