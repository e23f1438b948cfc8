// A work farm over the ranks of an MPI run (core/mpi.h): numbered items of independent work,
// handed out by rank 0 on demand, their results reported back to rank 0. The one hand-out loop
// behind every command that shares work over ranks: certification sweeps (certify/sweep_ranks.h:
// an item is a chunk of inputs) and the audits' model farms (privacy/audit_farm.h: an item is one
// shadow model or one training run).
//
// Design. An item's work must depend only on its number and on what every rank holds alike (the
// job, the data, the seeds), so that any rank can do any item and the results equal one process's.
//   - Rank 0 alone knows the items still to do (what the caller's files lack). At the start every
//     other rank gets two item numbers (one to work on, one queued so that it never waits for rank
//     0), and each returned result earns its rank the next pending item, or "stop" when none is
//     left. A rank that finishes early therefore takes more.
//   - Rank 0 works on items too, from the same pending list, and between its own items hands every
//     result that has arrived to on_result (where the caller writes it durably).
//   - Each item is worked on inside an mpi::SoloScope: the code it calls sees a run of one process
//     (a DP-SGD step reduces over no other rank; a model file is saved by the rank that trained it).
//   - Waiting ranks do not spin: a rank with nothing to do polls for its next message with a
//     short sleep between polls (50 µs growing to 2 ms), where a blocking MPI receive would keep
//     a core busy; a rank waits only at the end of the farm or when rank 0 is slow to answer.
//   - A rank stops receiving after its stop, so a farm that follows at once (the next σ of a
//     sweep) gets its own assignments.
// A killed rank ends the whole run (mpirun stops the others); what on_result (or the work itself)
// saved is kept, and the caller's next run leaves it out of `pending`.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace aegis::mpi {

// The work on one item, on any rank: its result, sent to rank 0 as it is.
using FarmWork = std::function<std::vector<double>(std::int64_t item)>;
// On rank 0, once per item, in the order results arrive: the item, its result and the rank that
// did the work (0 for rank 0's own).
using FarmResult = std::function<void(std::int64_t item, const std::vector<double>& result, int rank)>;

// Every rank of the run calls it with the same work. `pending` is read on rank 0 only: the items
// to do, handed out in this order (other ranks pass anything, e.g. {}). Returns when every item's
// result went through on_result (rank 0) or when this rank was told to stop (others). With one
// process: work and on_result on each item in turn. InvalidArgument for a negative item.
void run_farm(const std::vector<std::int64_t>& pending, const FarmWork& work, const FarmResult& on_result);

// Rank 0 holds every other rank here until it arrives itself, without busy waiting (the polling
// above): for the ranks of a farm while rank 0 still computes from the results. A barrier whose
// waiting ranks leave the cores to rank 0. Every rank calls it; with one process it returns.
void idle_barrier();

}  // namespace aegis::mpi
