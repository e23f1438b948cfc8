// Data-parallel training over the ranks of an MPI run (core/mpi.h): every rank holds the whole
// model and the whole data set, draws the same batch (from the seed, with no message), takes its
// contiguous slice of it, and computes that slice's gradient sums; the sums are then added over
// the ranks in rank order (kernels/rank_sum.h: in double, on the host through MPI, or on the GPUs
// through NCCL), so every rank holds the same gradient bit for bit, takes the same optimizer step,
// and the parameters stay identical without a broadcast. Plain training (nn/train.h) and DP-SGD
// (privacy/dp_ranks.h) both split their steps this way.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace aegis::nn {

// [begin, end) of this rank's contiguous slice of m items: rank r of K takes [⌊mr/K⌋, ⌊m(r+1)/K⌋),
// so slices differ in size by at most one and a rank's may be empty when m < K. [0, m) in one
// process.
std::pair<std::int64_t, std::int64_t> rank_rows(std::int64_t m);

// Replaces each parameter's grad by grad_scale × its sum over the ranks and returns the sums of
// `counts` (the same on every rank). A parameter that no rank reached keeps no grad, as in one
// process; one reached elsewhere gets the others' sum. The grads travel as one flat float32 buffer
// on the parameters' device (kernels/rank_sum.h); every rank must run on the same kind of device
// (InvalidArgument on every rank otherwise). A one-process run with grad_scale 1 returns `counts`
// untouched.
std::vector<double> sum_gradients_over_ranks(const std::vector<Var>& parameters, const std::vector<double>& counts,
                                             double grad_scale = 1.0);

}  // namespace aegis::nn
