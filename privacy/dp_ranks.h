// Data-parallel DP-SGD over the ranks of an MPI run (core/mpi.h): `mpirun -n K aegis train --dp`.
//
// Every rank holds the whole model and the whole training set and runs the same step loop. The
// Poisson sample of a step is keyed by (seed, step, example) (privacy/sampling.h), so every rank
// draws the same batch without a message; rank r takes the r-th of K contiguous slices of it and
// clips its examples' gradients into the parameters' grads (the book-keeping pass of
// privacy/per_example.h). The clipped sums, and the step's counts, are then summed over the
// ranks in a fixed order (nn/data_parallel.h: added in rank order in double, through MPI on the
// host or NCCL on GPUs), so every rank holds the same Σ_i clip_C(g_i) bit for bit. The noise that
// DpOptimizer adds is keyed by (seed, step, element) (privacy/noise.h), the same draw on every
// rank, so the parameters stay identical without a broadcast, and the privacy ledger is the
// one-process run's: the mechanism (sample, clipping, noise) is the same, only the work is split.
// With one rank the sums are the one-process run's exactly; with K ranks they differ from it only
// by the order of float32 additions within each slice.
#pragma once

#include <cstdint>
#include <vector>

#include "nn/data_parallel.h"

namespace aegis::privacy {

// This rank's contiguous part of a step's sample (all of it in a one-process run; nn::rank_rows).
std::vector<std::int64_t> rank_slice(const std::vector<std::int64_t>& sample);
// Where this rank's slice starts in the sample (0 in a one-process run).
std::int64_t rank_slice_begin(std::size_t sample_size);

// The clipped sums and the step's counts over the ranks (nn/data_parallel.h).
using nn::sum_gradients_over_ranks;

}  // namespace aegis::privacy
