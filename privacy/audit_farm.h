// The audits' model farm: the shadow models of `audit mia` and the training runs of the many-run
// `audit dp`, spread over the ranks of an MPI run (`mpirun -n K aegis audit ...`) as the items of
// a work farm (core/work_farm.h), one model per rank at a time.
//
// A model (or run) of an audit depends only on (recipe, seeds, its index), so any rank can train
// any of them and the files equal a one-process run's. Each rank saves what it trains into the
// audit's directory itself, atomically, exactly as one process would (a model file, a run
// record), so a finished model is on disk before its rank reports it, and a run killed by SIGKILL
// of any rank loses none: the same command, with one rank or with K, finds the files and trains
// only the missing ones. The directory must therefore be one that every rank sees (a shared file
// system on a cluster); after the farm, rank 0 computes the audit from the files as a resumed
// one-process run would, while the other ranks wait without using a core
// (mpi::idle_barrier) and then return an empty report.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/progress.h"

namespace aegis::privacy::audit_detail {

struct FarmOutcome {
  std::vector<bool> trained;  // rank 0: item i was trained (by some rank) in this call
  std::int64_t count = 0;     // rank 0: how many
  double seconds = 0.0;       // rank 0: their training time, summed over the ranks
};

// Trains the items 0..items−1 that are not done over the ranks. done(i) is asked on rank 0 only
// (whether item i's file is there and belongs to this audit; it may throw for a foreign file).
// train(i, last) trains item i on whichever rank gets it, saves its file, and returns its training
// seconds; `last` is true for the highest item trained in this call (a one-process run trains in
// increasing order, so that is the one whose model its shared output file holds). `dir` is the
// audit's directory: every rank must see it (InvalidArgument naming the rank otherwise). Progress
// (rank 0): `label`, one unit per item trained.
FarmOutcome farm_models(std::int64_t items, const std::function<bool(std::int64_t)>& done,
                        const std::function<double(std::int64_t, bool)>& train, const std::string& dir,
                        ProgressSink& progress, const std::string& label);

// Whether this process is one of several ranks of an MPI run (core/mpi.h), i.e. audits farm.
bool several_ranks();
// Whether this process is rank 0 (always, in one process).
bool is_rank0();

}  // namespace aegis::privacy::audit_detail
