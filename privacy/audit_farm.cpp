// The audits' model farm over MPI ranks (privacy/audit_farm.h).
#include "privacy/audit_farm.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/mpi.h"
#include "core/work_farm.h"

namespace aegis::privacy::audit_detail {

bool several_ranks() {
  return mpi::world().size > 1;
}

bool is_rank0() {
  return mpi::world().rank == 0;
}

FarmOutcome farm_models(std::int64_t items, const std::function<bool(std::int64_t)>& done,
                        const std::function<double(std::int64_t, bool)>& train, const std::string& dir,
                        ProgressSink& progress, const std::string& label) {
  const mpi::World& w = mpi::world();
  // Rank 0 made the directory before the barrier; a rank that does not see it after could not
  // share its models (this catches a directory on a node-local disk; the audit still checks every
  // file it reads back).
  mpi::barrier();
  std::vector<double> blind(static_cast<std::size_t>(w.size), 0.0);
  blind[static_cast<std::size_t>(w.rank)] = std::filesystem::is_directory(dir) ? 0.0 : 1.0;
  blind = mpi::sum_over_ranks(blind);
  if (w.rank == 0)
    for (int rank = 0; rank < w.size; ++rank)
      AEGIS_CHECK(blind[static_cast<std::size_t>(rank)] == 0.0,
                  "rank " << rank << " does not see the audit directory " << dir
                          << ": under mpirun every rank saves its models there (use a shared file system)");

  FarmOutcome outcome;
  std::vector<std::int64_t> pending;
  if (w.rank == 0) {
    outcome.trained.assign(static_cast<std::size_t>(items), false);
    for (std::int64_t i = 0; i < items; ++i)
      if (!done(i)) pending.push_back(i);
  }
  // Every rank learns the highest item to train (−1: none), for train's `last`.
  std::vector<double> last = {pending.empty() ? -1.0 : static_cast<double>(pending.back())};
  mpi::broadcast(last, 0);
  const auto last_item = static_cast<std::int64_t>(last[0]);

  if (w.rank == 0)
    progress.begin(label + " (" + std::to_string(w.size) + " ranks)", static_cast<std::int64_t>(pending.size()),
                   "models");
  mpi::run_farm(
      pending, [&](std::int64_t i) { return std::vector<double>{train(i, i == last_item)}; },
      [&](std::int64_t i, const std::vector<double>& result, int rank) {
        AEGIS_CHECK(i < items && result.size() == 1 && !outcome.trained[static_cast<std::size_t>(i)],
                    "audit: rank " << rank << " reported model " << i << " of " << items << " malformed or twice");
        outcome.trained[static_cast<std::size_t>(i)] = true;
        ++outcome.count;
        outcome.seconds += result[0];
        progress.update(outcome.count, rank == 0 ? "" : "last from rank " + std::to_string(rank));
      });
  if (w.rank == 0) progress.end("");
  return outcome;
}

}  // namespace aegis::privacy::audit_detail
