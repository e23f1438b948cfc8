// core/mpi.h over MPI (a build with -DAEGIS_MPI). Every call checks its return code; MPI's
// default error handler (MPI_ERRORS_ARE_FATAL) ends the run first on a broken connection.
// The C API only: without these, Open MPI's and MPICH's mpi.h pull in their deprecated C++ bindings,
// which need a library the C target does not link.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <limits>

#include "core/error.h"
#include "core/mpi.h"

namespace aegis::mpi {

namespace {

// Finalizes MPI when the program exits, after main returns (a static's destructor), unless the
// run was aborted, MPI was finalized already, or the host program (Python with mpi4py, say)
// had initialized MPI itself: then it is the host's to finalize, and aegis only joins its world.
struct Session {
  World world;
  bool owns = false;  // this Session called MPI_Init_thread
  Session() {
    if (!launched_by_launcher()) return;
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
      int provided = 0;
      // A failed start ends the process inside MPI (MPI_ERRORS_ARE_FATAL); were it to return,
      // this process runs alone rather than throwing from a static's constructor.
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return;
      owns = true;
    }
    world.initialized = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
  }
  ~Session() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns && !finalized) MPI_Finalize();
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

int local_rank() {
  // The launcher's word first; MPI's shared-memory split otherwise (computed once: it is collective).
  static const int rank = [] {
    const int from_launcher = local_rank_from_environment();
    if (from_launcher >= 0 || world().size <= 1) return std::max(from_launcher, 0);
    MPI_Comm node = MPI_COMM_NULL;
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world().rank, MPI_INFO_NULL, &node),
          "MPI_Comm_split_type");
    int r = 0;
    check(MPI_Comm_rank(node, &r), "MPI_Comm_rank");
    MPI_Comm_free(&node);
    return r;
  }();
  return rank;
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
  // Reduce-scatter then all-gather, each by rank order: rank b owns the b-th of `size` contiguous
  // blocks, receives every rank's copy of that block (MPI_Alltoallv), adds the copies in rank
  // order in double, and the owned sums are gathered everywhere (MPI_Allgatherv). Every element
  // is Σ_r values_r[i] added from rank 0 up, so the result is bit-identical to gathering all on
  // one rank, while each rank sends and receives 2·(size−1)/size of the vector (as a ring
  // all-reduce does) and does 1/size of the additions.
  const std::size_t n = values.size(), size = static_cast<std::size_t>(w.size);
  std::vector<int> counts(size), offsets(size);
  for (std::size_t b = 0; b < size; ++b) {
    offsets[b] = count_of(n * b / size);
    counts[b] = count_of(n * (b + 1) / size) - offsets[b];
  }
  const auto own = static_cast<std::size_t>(counts[static_cast<std::size_t>(w.rank)]);
  std::vector<double> copies(own * size);
  std::vector<int> recv_counts(size, static_cast<int>(own)), recv_offsets(size);
  for (std::size_t r = 0; r < size; ++r) recv_offsets[r] = count_of(own * r);
  check(MPI_Alltoallv(values.data(), counts.data(), offsets.data(), MPI_DOUBLE, copies.data(), recv_counts.data(),
                      recv_offsets.data(), MPI_DOUBLE, MPI_COMM_WORLD),
        "MPI_Alltoallv");
  std::vector<double> block(own, 0.0);
  for (std::size_t r = 0; r < size; ++r)  // rank order: the same rounding in every run with this many ranks
    for (std::size_t i = 0; i < own; ++i) block[i] += copies[r * own + i];
  std::vector<double> sum(n);
  check(MPI_Allgatherv(block.data(), static_cast<int>(own), MPI_DOUBLE, sum.data(), counts.data(), offsets.data(),
                       MPI_DOUBLE, MPI_COMM_WORLD),
        "MPI_Allgatherv");
  return sum;
}

void broadcast(std::vector<double>& values, int root) {
  if (world().size <= 1) return;
  check(MPI_Bcast(values.data(), count_of(values.size()), MPI_DOUBLE, root, MPI_COMM_WORLD), "MPI_Bcast");
}

void broadcast_bytes(std::vector<unsigned char>& bytes, int root) {
  if (world().size <= 1) return;
  check(MPI_Bcast(bytes.data(), count_of(bytes.size()), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
}

std::vector<unsigned char> all_gather_bytes(const std::vector<unsigned char>& mine) {
  const World& w = world();
  if (w.size <= 1) return mine;
  const int n = count_of(mine.size());
  std::vector<unsigned char> all(mine.size() * static_cast<std::size_t>(w.size));
  check(MPI_Allgather(mine.data(), n, MPI_BYTE, all.data(), n, MPI_BYTE, MPI_COMM_WORLD), "MPI_Allgather");
  return all;
}

void abort_run(int status) noexcept {
  const World& w = session().world;  // the whole run, even from inside a SoloScope
  if (w.initialized && w.size > 1) MPI_Abort(MPI_COMM_WORLD, status);
}

}  // namespace aegis::mpi
