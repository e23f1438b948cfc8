// A certification sweep (certify/sweep.h) spread over the ranks of an MPI run (core/mpi.h):
// `mpirun -n K aegis certify ...` or `srun aegis certify ...`.
//
// Design. The work is the same list of fixed chunks that run_sweep walks (consecutive slices of
// the selected inputs, chunk_size inputs each), so every certificate is computed from the same
// forward batches as in one process. A certificate depends only on (model, x, idx, seed, n0, n, σ)
// (certify/smoothing.h), so any rank can certify any chunk and the rows equal a one-process run's.
//   - Rank 0 alone opens the TSV (its lock, its settings sidecar, the resumed rows) and decides
//     which chunks still miss a row. The chunks are the items of a work farm (core/work_farm.h):
//     rank 0 hands chunk numbers out on demand, two per rank at a time, so a rank that finishes
//     early takes more (per-chunk time varies with abstentions), and certifies chunks too.
//     Every rank sends back the chunk's idx values (checked against rank 0's, so ranks with
//     different data are caught), predictions, radii and its time per input.
//   - Rows are appended durably (one write + fdatasync each) in the order results arrive, so the
//     TSV is not sorted by idx; nothing needs it to be: resuming keeps a set of the idx values
//     present and `aegis analyze` sorts rows by idx.
//   - A killed rank ends the whole run (mpirun stops the others). Resuming with the same command
//     reads the file on rank 0: chunks whose rows are all there are skipped, a chunk cut short is
//     certified again whole and only its missing rows are written, as in one process. Nothing is
//     lost (every written row was synced) and nothing is repeated (rank 0 never appends an idx
//     the file holds).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "certify/sweep.h"

namespace aegis::certify {

// Rank 0 passes the open file; every other rank passes nullptr and gets an empty summary. All
// ranks pass the same `inputs` and `chunk`. On rank 0: on_chunk(rows in the file) after each
// chunk written, and on_remote_chunk(inputs) when another rank's chunk arrives (for progress).
// With one process this is run_sweep.
SweepSummary run_sweep_ranks(SweepFile* file, const std::vector<SweepInput>& inputs, std::int64_t chunk,
                             const ChunkCertifier& certify, const std::function<void(std::int64_t)>& on_chunk = {},
                             const std::function<void(std::int64_t)>& on_remote_chunk = {});

}  // namespace aegis::certify
