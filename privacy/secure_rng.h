// Secure mode's randomness: keys from the operating system, a cryptographic keystream, exact
// samplers on top of it, and the grid-based Gaussian mechanism that DP-SGD's secure mode uses.
//
// Generator. A SecureKey is 256 bits from the OS (libsodium randombytes_buf, i.e. getrandom(2) on
// Linux); it is never derived from a user seed, so secure runs are not reproducible by design. A
// SecureStream is the XChaCha20 keystream (Bernstein's ChaCha20 with the extended 192-bit nonce)
// under that key, with the nonce = (purpose, step, stream id): like Philox's (purpose, step,
// index) keying, every (purpose, step, stream) names its own stream, so a fresh step or a fresh
// parameter chunk never reuses keystream.
//
// Exact samplers. Bernoulli(p) for a double p and Bernoulli(exp(−a/b)) for integers a, b are
// exact: integer comparisons against uniform integers drawn by rejection, no floating point.
// discrete_gaussian() is the exact sampler of Canonne, Kamath & Steinke, "The Discrete Gaussian
// for Differential Privacy", NeurIPS 2020 (Alg. 1 Bernoulli(exp(−γ)), Alg. 2 discrete Laplace,
// Alg. 3 discrete Gaussian), in 128-bit integer arithmetic.
//
// The floating-point attack and its mitigation. Mironov ("On significance of the least
// significant bits for differential privacy", CCS 2012) showed that x + Z computed in floating
// point leaks x: the set of doubles that x + Z can produce, and their probabilities, depend on x
// beyond what the ideal mechanism reveals, so a single output can rule out neighbouring inputs. The
// secure mechanism here never adds floating-point noise to the data. For a buffer of d values v_i
// (the clipped gradient sum plus canary) it releases the INTEGER vector
//   m_i = round(v_i / γ) + k_i,   k_i ~ N_Z(0, S) i.i.d. (discrete Gaussian, exactly sampled)
// on the grid γ = 2^(⌈log2(σC)⌉−26), a power of two, so v_i/γ and round() are exact; S is
// (σC/γ)² ∈ (2^50, 2^52] rounded up (with margin for the rounding of σ·C) to an integer, so the
// noise scale γ·sqrt(S) is at least σC.
// Everything after — γ·m_i as a float, the division by q·N, the optimizer — is a deterministic
// function of m (post-processing). Every integer is a possible m_i whatever v is, so there is no
// input-dependent output set to read. Guarantee, stated precisely: if adding or removing one
// example changes (v_1..v_d) by at most C in L2 norm, then round(v/γ) changes by at most
// Δ = C/γ + sqrt(d) in L2 (each coordinate's rounding moves it by at most 1/2), and by CKS 2020
// Thm. 15 (multivariate discrete Gaussian) one release satisfies ρ-zCDP with ρ = Δ²/(2S): the
// Rényi divergence of every order α is at most α·Δ²/(2S), the same as the continuous Gaussian
// mechanism with noise multiplier
//   σ_eff = sqrt(S) / Δ ≥ σ / (1 + σ·sqrt(d)·2^−25)        (SecureGrid::effective_noise_multiplier)
// — e.g. σ_eff ≥ 0.9997·σ for σ = 1 and d = 10^8. Caveats, not covered by this statement: the
// subsampled-Gaussian accountants (Mironov, Talwar & Zhang 2019) were derived for the continuous
// Gaussian, and applying them to the discrete one under Poisson subsampling is the usual
// approximation, not proved here (the general subsampled-RDP bound of Zhu & Wang 2019, Thm. 6
// applies to any mechanism with a known RDP curve); and the bound C on one example's contribution
// is only as exact as the float arithmetic of the clipping code that computed v.
//
// Exactness limit: the samplers are exact except on an event of probability below e^(−2^20) per
// draw (a discrete Laplace proposal beyond 2^64/t, whose acceptance test would overflow 128 bits,
// is rejected after 2^20 Bernoulli(1/e) successes instead of running to the end).
//
// Secure mode runs on the host: GPU-resident sums are copied to the CPU, noised there, and the
// noisy result is copied back (privacy/noise.h). Cost: ~1 µs per noised value per core; a DP
// step over 2^20 parameters took 1.07 s on 2 cores against 0.11 s for the fused Philox kernel.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace aegis::privacy {

class SecureKey {
 public:
  // 32 bytes from the OS. Throws aegis::Error if libsodium cannot be initialized.
  static SecureKey from_os();
  SecureKey(const SecureKey&) = default;
  SecureKey& operator=(const SecureKey&) = default;
  ~SecureKey();  // wipes the key bytes
  const unsigned char* bytes() const { return m_bytes.data(); }

 private:
  SecureKey() = default;
  std::array<unsigned char, 32> m_bytes{};
};

// XChaCha20 keystream for (key, purpose, step, stream); words are read in order from a buffer of
// keystream blocks. Not copyable (a copy would replay the same words).
class SecureStream {
 public:
  SecureStream(const SecureKey& key, std::uint32_t purpose, std::uint64_t step, std::uint64_t stream);
  SecureStream(const SecureStream&) = delete;
  SecureStream& operator=(const SecureStream&) = delete;
  ~SecureStream();  // wipes the key copy and the buffered keystream

  std::uint64_t next_u64();
  // Uniform on {0, …, n − 1}, exactly (rejection sampling on the next power of two). n ≥ 1.
  std::uint64_t uniform_below(std::uint64_t n);
  // True with probability exactly p, for any double p in [0, 1]: a uniform real U is compared
  // with p bit by bit, 64 bits at a time, until they differ (p is a dyadic rational).
  bool bernoulli(double p);
  // True with probability exactly exp(−num/den); den ≥ 1 (CKS 2020, Alg. 1).
  bool bernoulli_exp(std::uint64_t num, std::uint64_t den);

 private:
  void refill();
  std::array<unsigned char, 32> m_key{};
  std::array<unsigned char, 24> m_nonce{};
  std::uint64_t m_block = 0;                 // ChaCha block counter of the next refill
  std::array<std::uint64_t, 32> m_buffer{};  // 4 keystream blocks
  std::size_t m_pos = m_buffer.size();
};

// One exact draw from the discrete Gaussian N_Z(0, sigma_sq): P(x) ∝ exp(−x²/(2·sigma_sq)) on the
// integers (CKS 2020, Alg. 3). 1 ≤ sigma_sq ≤ 2^53 (the bound keeps every intermediate of the
// acceptance test within 128 bits); InvalidArgument otherwise.
std::int64_t discrete_gaussian(SecureStream& rng, std::uint64_t sigma_sq);

// ---- the grid Gaussian mechanism of secure DP-SGD ---------------------------------------------
// Elements per keystream: a buffer is cut into chunks that are noised in parallel, chunk j of
// stream id s drawing from SecureStream(key, purpose, step, (s << 32) | j).
constexpr std::int64_t kSecureChunk = 1 << 14;

struct SecureGrid {
  double grid = 0.0;           // γ = 2^(⌈log2(σC)⌉−26)
  std::uint64_t variance = 0;  // S ≥ (σC/γ)² in grid units; S ≤ 2^52 + 8
  double max_grad_norm = 0.0;  // C

  // σ, C > 0 and finite; InvalidArgument otherwise.
  static SecureGrid make(double noise_multiplier, double max_grad_norm);
  // σ_eff = sqrt(S) / (C/γ + sqrt(d)) for d noised values per step in total (see above): the
  // noise multiplier an accountant must use for secure mode.
  double effective_noise_multiplier(std::int64_t num_values) const;
  // |v|/γ must stay below 2^52 so that round(v/γ) + k and γ·m are exact in double.
  double max_abs_input() const;
};

// The released integers m_i = round(in_i/γ) + k_i, k_i ~ N_Z(0, S), for a host buffer of n
// values; `stream_id` distinguishes buffers noised under the same (purpose, step): chunk j of the
// buffer draws from SecureStream(key, purpose, step, stream_id·2^32 + j). Throws NumericError
// naming the first value that is non-finite or beyond max_abs_input(), before drawing anything.
void secure_noisy_integers(const float* in, std::int64_t* out, std::int64_t n, const SecureGrid& grid,
                           const SecureKey& key, std::uint32_t purpose, std::uint64_t step, std::uint32_t stream_id);
// Their post-processing to floats, out_i = float(γ·m_i) (in and out may alias).
void secure_noisy_values(const float* in, float* out, std::int64_t n, const SecureGrid& grid, const SecureKey& key,
                         std::uint32_t purpose, std::uint64_t step, std::uint32_t stream_id);

}  // namespace aegis::privacy
