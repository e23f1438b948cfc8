// core/mpi.h over MPI (a build with -DAEGIS_MPI). Every call checks its return code; MPI's
// default error handler (MPI_ERRORS_ARE_FATAL) ends the run first on a broken connection.
// The C API only: without these, Open MPI's and MPICH's mpi.h pull in their deprecated C++ bindings,
// which need a library the C target does not link.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstddef>
#include <limits>

#include "core/error.h"
#include "core/mpi.h"

namespace aegis::mpi {

namespace {

// Finalizes MPI when the program exits, after main returns (a static's destructor), unless the
// run was aborted or MPI was finalized already.
struct Session {
  World world;
  Session() {
    if (!launched_by_launcher()) return;
    int provided = 0;
    // A failed start ends the process inside MPI (MPI_ERRORS_ARE_FATAL); were it to return, this
    // process runs alone rather than throwing from a static's constructor.
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return;
    world.initialized = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
  }
  ~Session() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (world.initialized && !finalized) MPI_Finalize();
  }
};

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  AEGIS_THROW(DeviceError, what << " failed: " << std::string(text, static_cast<std::size_t>(length)));
}

void require_several(const char* what) {
  AEGIS_CHECK_AS(DeviceError, world().size > 1, what << " needs a run of several processes (mpirun -n K)");
}

int count_of(std::size_t n) {
  AEGIS_CHECK(n <= static_cast<std::size_t>(std::numeric_limits<int>::max()),
              "an MPI message of " << n << " values is longer than MPI's int count allows");
  return static_cast<int>(n);
}

const Session& session() {
  static const Session s;
  return s;
}

}  // namespace

const World& world() {
  static const World alone{0, 1, session().world.initialized};
  return solo() ? alone : session().world;
}

std::string library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string version(text, static_cast<std::size_t>(length));
  const std::size_t line_end = version.find_first_of("\r\n,");
  return line_end == std::string::npos ? version : version.substr(0, line_end);
}

void send(int dest, int tag, const std::vector<double>& data) {
  require_several("sending a message");
  check(MPI_Send(data.data(), count_of(data.size()), MPI_DOUBLE, dest, tag, MPI_COMM_WORLD), "MPI_Send");
}

Message receive(int source, int tag) {
  require_several("receiving a message");
  MPI_Status status;
  const int from = source == kAnySource ? MPI_ANY_SOURCE : source;
  check(MPI_Probe(from, tag, MPI_COMM_WORLD, &status), "MPI_Probe");
  int count = 0;
  check(MPI_Get_count(&status, MPI_DOUBLE, &count), "MPI_Get_count");
  Message m;
  m.source = status.MPI_SOURCE;
  m.tag = status.MPI_TAG;
  m.data.resize(static_cast<std::size_t>(count));
  check(MPI_Recv(m.data.data(), count, MPI_DOUBLE, m.source, m.tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
  return m;
}

bool message_waiting(int source, int tag) {
  if (world().size <= 1) return false;
  int flag = 0;
  check(MPI_Iprobe(source == kAnySource ? MPI_ANY_SOURCE : source, tag, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE),
        "MPI_Iprobe");
  return flag != 0;
}

void barrier() {
  if (world().size <= 1) return;
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

std::vector<double> sum_over_ranks(const std::vector<double>& values) {
  const World& w = world();
  if (w.size <= 1) return values;
  const int n = count_of(values.size());
  std::vector<double> all;
  if (w.rank == 0) all.resize(values.size() * static_cast<std::size_t>(w.size));
  check(MPI_Gather(values.data(), n, MPI_DOUBLE, all.data(), n, MPI_DOUBLE, 0, MPI_COMM_WORLD), "MPI_Gather");
  std::vector<double> sum(values.size(), 0.0);
  if (w.rank == 0)
    for (int r = 0; r < w.size; ++r)  // rank order: the same rounding in every run with this many ranks
      for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += all[static_cast<std::size_t>(r) * sum.size() + i];
  check(MPI_Bcast(sum.data(), n, MPI_DOUBLE, 0, MPI_COMM_WORLD), "MPI_Bcast");
  return sum;
}

void broadcast(std::vector<double>& values, int root) {
  if (world().size <= 1) return;
  check(MPI_Bcast(values.data(), count_of(values.size()), MPI_DOUBLE, root, MPI_COMM_WORLD), "MPI_Bcast");
}

void abort_run(int status) noexcept {
  const World& w = session().world;  // the whole run, even from inside a SoloScope
  if (w.initialized && w.size > 1) MPI_Abort(MPI_COMM_WORLD, status);
}

}  // namespace aegis::mpi
