// Batch sampling for DP-SGD.
//
// Poisson sampling — the sampling every DP-SGD accountant in aegis assumes (the "sampled Gaussian
// mechanism" of Mironov, Talwar & Zhang 2019; Abadi et al. 2016 §3.1): at step t each of the N
// examples joins the batch independently with probability q, so the batch size is Binomial(N, q)
// and varies from step to step. Philox mode decides example i at step t from the 64 bits
// philox::block((seed, kPurposeSampling, t), i).v[0..1]: it joins iff those bits, read as an
// integer u, satisfy u < ⌊q·2^64⌋ — probability exactly q when q ≥ 2^−12 (q·2^64 is then an
// integer) and within 2^−64 of q otherwise. Secure mode draws an exact Bernoulli(q) per example
// from SecureStream(key, kPurposeSampling, t, 0) (privacy/secure_rng.h). The same (seed, step)
// always gives the same batch. Resampling a step because its batch looks inconvenient (empty, too
// large) is NOT allowed: it changes the distribution the accountant assumed.
//
// EMPTY BATCHES are legitimate outcomes (probability (1 − q)^N) and callers must handle them: the
// step still happens, with a clipped sum of zero, so the update is pure noise (DpOptimizer treats
// a parameter without a gradient that way). Skipping the step would also change the accounting.
//
// Static shapes for the GPU: gather_masked() copies a sample into a fixed-capacity batch whose
// unused rows are zero images with label 0 and mask 0; the clipping code must multiply each
// example's contribution by its mask so padding adds exactly zero. masked_capacity(N, q) =
// ⌈qN + 6·sqrt(qN(1 − q))⌉ (clamped to [1, N]) exceeds the mean by six binomial standard
// deviations, so a sample rarely overflows it; when one does (more likely for small qN, where
// the binomial tail is heavier than the normal one), the step's sample is split by
// split_into_chunks() and processed as several masked batches whose clipped sums are added
// before the single noisy update of that step — never truncated, never resampled.
//
// shuffled_batches() is NOT Poisson sampling: fixed-size batches from a shuffled order (each
// example exactly once per epoch). It is for non-private training and comparisons only; the
// accountants' guarantees assume Poisson sampling and do not hold for it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "nn/data/dataset.h"
#include "privacy/secure_rng.h"
#include "core/device.h"
#include "runtime/tensor.h"

namespace aegis::privacy {

// The sorted indices of the examples in step `step`'s Poisson sample of {0, …, n − 1}; possibly
// empty. n ≥ 0 and q ∈ (0, 1], else InvalidArgument naming the value.
std::vector<std::int64_t> poisson_sample(std::int64_t n, double q, std::uint64_t seed, std::uint64_t step);
// The same with OS-keyed cryptographic randomness and exact Bernoulli(q) decisions.
std::vector<std::int64_t> poisson_sample_secure(std::int64_t n, double q, const SecureKey& key, std::uint64_t step);

// Owns the sampling configuration of a run; secure = true draws a key from the OS once, at
// construction (seed is then ignored).
class PoissonSampler {
 public:
  PoissonSampler(std::int64_t n, double q, std::uint64_t seed, bool secure = false);
  std::vector<std::int64_t> sample(std::uint64_t step) const;
  std::int64_t dataset_size() const { return m_n; }
  double sampling_rate() const { return m_q; }
  double expected_batch_size() const { return m_q * static_cast<double>(m_n); }
  std::int64_t capacity() const;  // masked_capacity(n, q)

 private:
  std::int64_t m_n;
  double m_q;
  std::uint64_t m_seed;
  std::optional<SecureKey> m_key;  // secure mode only
};

// ⌈qN + 6·sqrt(qN(1 − q))⌉ clamped to [1, N] (1 when N = 0).
std::int64_t masked_capacity(std::int64_t n, double q);

struct MaskedBatch {
  Tensor images;          // f32 [capacity, C, H, W]; rows ≥ size are zero
  Tensor labels;          // i32 [capacity]; rows ≥ size are 0
  Tensor mask;            // f32 [capacity]; 1 for the first `size` rows, 0 after
  std::int64_t size = 0;  // number of real examples, 0 … capacity
};

// Rows indices[0..k) of the dataset in the first k rows of a capacity-row batch on `device`.
// capacity ≥ 1; indices.size() ≤ capacity (else InvalidArgument: split the sample first); every
// index in [0, N).
MaskedBatch gather_masked(const nn::Dataset& dataset, const std::vector<std::int64_t>& indices, std::int64_t capacity,
                          Device device);
// Consecutive pieces of at most `capacity` indices covering `indices` in order; one empty piece
// for an empty sample (so a step always has at least one batch to process).
std::vector<std::vector<std::int64_t>> split_into_chunks(const std::vector<std::int64_t>& indices,
                                                         std::int64_t capacity);

// NOT POISSON (see above): the epoch's shuffled order (nn::shuffled_order(n, seed, epoch)) cut
// into ⌊n / batch_size⌋ batches of exactly batch_size; the last n mod batch_size examples of the
// order are left out of this epoch. 1 ≤ batch_size ≤ n.
std::vector<std::vector<std::int64_t>> shuffled_batches(std::int64_t n, std::int64_t batch_size, std::uint64_t seed,
                                                        std::uint32_t epoch);

}  // namespace aegis::privacy
