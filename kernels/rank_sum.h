// Sums of one float32 buffer over the ranks of an MPI run (core/mpi.h): the gradient sums of
// data-parallel training (nn/data_parallel.h). Every rank passes its n values and gets back
//   out_i = float(scale · Σ_{r=0}^{K−1} values_{r,i})
// with the K values added in double in rank order and rounded to float32 once: the same bits on
// every rank, in every run with K ranks, and on either backend (the CPU path is the reference).
//
// CPU: the buffer goes through mpi::sum_over_ranks (a reduce-scatter and an all-gather, each
// element added in rank order by the rank that owns its block).
// CUDA, with NCCL compiled in and every rank on a GPU of its own: ncclAllGather of the K buffers
// into one [K, n] device buffer, then add_in_rank_order, one thread per element in a grid-stride
// loop (256 threads per block). Why not ncclAllReduce: its order of additions follows the ring or
// tree NCCL picks for the message size and topology, so sums would change with the node layout and
// differ from the CPU path; the all-gather receives (K−1)·n floats per rank where a ring all-reduce
// moves 2(K−1)/K·n, a K/2 × larger message, which at the K ≤ 8 GPUs of a node costs little next to a
// step's backward pass. NCCL refuses two ranks on one GPU; then, and without NCCL, the CUDA path
// copies the buffer to the host and takes the CPU path. The NCCL communicator is made on first use
// (its unique id broadcast from rank 0 with MPI) and lives until the process exits.
#pragma once

#include <cstdint>
#include <string>

namespace aegis::kernels {

// Whether this build links NCCL (CUDA builds that found nccl.h and libnccl).
bool nccl_compiled();

namespace cpu {
// out_i = float(scale · Σ_r all[r·n + i]) for r = 0 … ranks−1 in order, in double. `out` may be
// any row of `all` (each element is read before it is written).
void add_in_rank_order(const float* all, int ranks, std::int64_t n, double scale, float* out);
// values ← the sum over the ranks, as above (one process: values × scale).
void sum_over_ranks(float* values, std::int64_t n, double scale);
}  // namespace cpu

namespace cuda {
void add_in_rank_order(const float* d_all, int ranks, std::int64_t n, double scale, float* d_out);
// Through NCCL when it can serve the run (even with one rank, which exercises the same calls),
// else through the host. Collective: every rank calls it with the same n.
void sum_over_ranks(float* d_values, std::int64_t n, double scale);
// How this run's device sums travel: "nccl <version>, K ranks", or why they go through the host.
// Collective on first use (it makes the communicator).
std::string rank_sum_route();
}  // namespace cuda

}  // namespace aegis::kernels
