// Running the aegis tool under mpirun from a test (tests/test_mpi*.cpp, built only with MPI): the
// launcher's words, a run collected like testing::run_cli, a run started in the background (to be
// killed), and the pid of one of its ranks.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "support/testing.h"

namespace aegis::testing {

// mpirun with one thread per rank (the ranks share the cores), no core binding (3 ranks on 2
// cores), root allowed (CI containers run as root), a run that hangs ended after 2 minutes, then
// -n `ranks` and the aegis binary.
std::vector<std::string> mpirun_words(int ranks);

// Runs `mpirun ... aegis <args>` (args: shell words) and collects its status, stdout and stderr.
CliRun run_mpi(int ranks, const std::string& args);

// Runs `aegis <args>` in one process with the ranks' one OpenMP thread: the reference the
// ranks' results are compared with bit for bit (a reduction may split its work by thread, so
// another thread count can move the last bits).
CliRun run_one_process(const std::string& args);

// Starts `mpirun ... aegis <args>` (args split at spaces) in the background with its output
// discarded; returns mpirun's pid (0 when it could not start).
pid_t spawn_mpi(int ranks, const std::string& args);

// The pid of rank `rank`: a child of mpirun running aegis whose environment names that rank; 0
// when there is none (yet).
pid_t rank_pid(pid_t mpirun, int rank);

}  // namespace aegis::testing
