// Secure generator and exact samplers (privacy/secure_rng.h). All sampling decisions are integer
// comparisons against uniform integers from the XChaCha20 keystream; the only floating point is
// the choice of grid and variance (public parameters) and the post-processing of the integers.
#include "privacy/secure_rng.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace aegis::privacy {

namespace {

__extension__ typedef unsigned __int128 u128;  // GCC/Clang extension; -Wpedantic needs the marker

// A discrete Laplace proposal beyond 2^64/t would overflow the 128-bit acceptance test; for such a
// proposal ⌊γ⌋ ≥ 2^20 (header), so it is rejected after at most this many Bernoulli(1/e) trials.
constexpr int kHugeProposalTrials = 1 << 20;
constexpr std::uint64_t kMaxDiscreteGaussianVariance = 1ULL << 53;

void store_le(unsigned char* dst, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) dst[i] = static_cast<unsigned char>(value >> (8 * i));
}

u128 next_u128(SecureStream& rng) {
  const u128 hi = rng.next_u64();
  return (hi << 64) | rng.next_u64();
}

// Uniform on {0, …, n − 1}, n ≥ 1, by rejection on the smallest covering power of two.
u128 uniform_below_u128(SecureStream& rng, u128 n) {
  if ((n >> 64) == 0) return rng.uniform_below(static_cast<std::uint64_t>(n));
  const std::uint64_t top = static_cast<std::uint64_t>((n - 1) >> 64);
  if (top == 0) return rng.next_u64();  // n = 2^64
  const int bits = 128 - __builtin_clzll(top);
  const u128 mask = bits == 128 ? ~static_cast<u128>(0) : (static_cast<u128>(1) << bits) - 1;
  for (;;) {
    const u128 x = next_u128(rng) & mask;
    if (x < n) return x;
  }
}

// Bernoulli(num/den), num ≤ den.
bool bernoulli_ratio(SecureStream& rng, u128 num, u128 den) {
  if (num == 0) return false;
  if (num >= den) return true;
  return uniform_below_u128(rng, den) < num;
}

// Bernoulli(exp(−γ)) for γ = num/den ∈ [0, 1] (CKS 2020, Alg. 1, first case): draw
// A_k ~ Bernoulli(γ/k) for k = 1, 2, … until one is 0; return whether that k is odd. Bernoulli(γ/k)
// is drawn as Bernoulli(γ) AND Bernoulli(1/k), whose probabilities multiply, so no product
// den·k is ever formed.
bool bernoulli_exp_unit(SecureStream& rng, u128 num, u128 den) {
  std::uint64_t k = 1;
  while (bernoulli_ratio(rng, num, den) && rng.uniform_below(k) == 0) ++k;
  return (k & 1) != 0;
}

// Bernoulli(exp(−num/den)) for any num/den ≥ 0 (CKS 2020, Alg. 1, second case): ⌊γ⌋ independent
// Bernoulli(e^−1) must all succeed, then one Bernoulli(exp(−(γ − ⌊γ⌋))).
bool bernoulli_exp_u128(SecureStream& rng, u128 num, u128 den) {
  const u128 whole = num / den;
  for (u128 i = 0; i < whole; ++i)
    if (!bernoulli_exp_unit(rng, 1, 1)) return false;
  return bernoulli_exp_unit(rng, num % den, den);
}

struct LaplaceDraw {
  bool negative;
  u128 magnitude;
};

// Discrete Laplace with P(x) ∝ exp(−|x|/t), t ≥ 1 (CKS 2020, Alg. 2 with s = 1).
LaplaceDraw discrete_laplace(SecureStream& rng, std::uint64_t t) {
  for (;;) {
    const std::uint64_t u = rng.uniform_below(t);
    if (!bernoulli_exp_unit(rng, u, t)) continue;
    u128 v = 0;
    while (bernoulli_exp_unit(rng, 1, 1)) ++v;
    const u128 x = u + static_cast<u128>(t) * v;
    const bool negative = (rng.next_u64() & 1) != 0;
    if (negative && x == 0) continue;  // otherwise 0 would be drawn twice as often as it should
    return {negative, x};
  }
}

std::uint64_t isqrt(std::uint64_t s) {
  auto r = static_cast<std::uint64_t>(std::sqrt(static_cast<double>(s)));
  while (r * r > s) --r;
  while ((r + 1) * (r + 1) <= s) ++r;
  return r;
}

// CKS 2020, Alg. 3, for an integer variance S ≤ 2^53 (checked by the callers): t = ⌊σ⌋ + 1,
// propose Y from the discrete Laplace with scale t and accept it with probability
// exp(−(|Y| − σ²/t)²/(2σ²)) = exp(−(|Y|·t − S)² / (2·S·t²)).
std::int64_t discrete_gaussian_unchecked(SecureStream& rng, std::uint64_t sigma_sq) {
  const std::uint64_t t = isqrt(sigma_sq) + 1;               // < 2^27
  const u128 den = static_cast<u128>(2) * sigma_sq * t * t;  // < 2^108
  const u128 limit = static_cast<u128>(1) << 64;
  for (;;) {
    const LaplaceDraw y = discrete_laplace(rng, t);
    const u128 yt = (y.magnitude >> 64) ? limit : y.magnitude * t;
    if (yt >= limit) {
      // (|Y|t − S)² ≥ (2^64 − 2^53)² and 2St² < 2^108, so ⌊γ⌋ ≥ 2^20: the exact test runs at least
      // this many Bernoulli(1/e) trials; a proposal that passes them all is rejected as well.
      for (int i = 0; i < kHugeProposalTrials; ++i)
        if (!bernoulli_exp_unit(rng, 1, 1)) break;
      continue;
    }
    const u128 diff = yt > sigma_sq ? yt - sigma_sq : sigma_sq - yt;  // < 2^64
    if (bernoulli_exp_u128(rng, diff * diff, den)) {
      const auto magnitude = static_cast<std::int64_t>(y.magnitude);  // < 2^64 / t ≤ 2^63
      return y.negative ? -magnitude : magnitude;
    }
  }
}

}  // namespace

// ---- SecureKey -------------------------------------------------------------------------------

SecureKey SecureKey::from_os() {
  if (sodium_init() < 0) AEGIS_THROW(Error, "secure mode: libsodium could not be initialized (sodium_init failed)");
  SecureKey key;
  randombytes_buf(key.m_bytes.data(), key.m_bytes.size());
  return key;
}

SecureKey::~SecureKey() {
  sodium_memzero(m_bytes.data(), m_bytes.size());
}

// ---- SecureStream ----------------------------------------------------------------------------

SecureStream::SecureStream(const SecureKey& key, std::uint32_t purpose, std::uint64_t step, std::uint64_t stream) {
  static_assert(crypto_stream_xchacha20_KEYBYTES == 32 && crypto_stream_xchacha20_NONCEBYTES == 24,
                "XChaCha20 key and nonce sizes");
  std::memcpy(m_key.data(), key.bytes(), m_key.size());
  // nonce = purpose (4 bytes) ‖ step (8) ‖ stream (8) ‖ 0 (4), little-endian.
  store_le(m_nonce.data(), purpose, 4);
  store_le(m_nonce.data() + 4, step, 8);
  store_le(m_nonce.data() + 12, stream, 8);
}

SecureStream::~SecureStream() {
  sodium_memzero(m_key.data(), m_key.size());
  sodium_memzero(m_buffer.data(), sizeof(m_buffer));
}

void SecureStream::refill() {
  constexpr std::size_t kBytes = sizeof(m_buffer);
  static_assert(kBytes % 64 == 0, "whole ChaCha blocks");
  unsigned char bytes[kBytes] = {};
  // Keystream blocks m_block, m_block + 1, …: XOR into zeros.
  crypto_stream_xchacha20_xor_ic(bytes, bytes, kBytes, m_nonce.data(), m_block, m_key.data());
  m_block += kBytes / 64;
  std::memcpy(m_buffer.data(), bytes, kBytes);
  sodium_memzero(bytes, kBytes);
  m_pos = 0;
}

std::uint64_t SecureStream::next_u64() {
  if (m_pos == m_buffer.size()) refill();
  return m_buffer[m_pos++];
}

std::uint64_t SecureStream::uniform_below(std::uint64_t n) {
  AEGIS_CHECK(n >= 1, "uniform_below: bound " << n << " must be at least 1");
  if (n == 1) return 0;
  const std::uint64_t mask = ~0ULL >> __builtin_clzll(n - 1);
  for (;;) {
    const std::uint64_t x = next_u64() & mask;
    if (x < n) return x;
  }
}

bool SecureStream::bernoulli(double p) {
  AEGIS_CHECK(p >= 0.0 && p <= 1.0, "bernoulli: probability " << p << " must lie in [0, 1]");
  if (p == 1.0) return true;
  if (p == 0.0) return false;
  int e = 0;
  const double f = std::frexp(p, &e);                            // p = f·2^e, f ∈ [0.5, 1), e ≤ 0
  const auto m = static_cast<std::uint64_t>(std::ldexp(f, 53));  // p = m·2^(e − 53) exactly
  // Binary fraction digit b (weight 2^−b) of p is bit (last − b) of m, last = 53 − e. A uniform
  // U ∈ [0, 1) is compared with p 64 digits at a time: word j holds digits 64j+1 … 64j+64, i.e.
  // ⌊m·2^(64(j+1) − last)⌋ mod 2^64. The first differing word decides U < p; if every word of p
  // is matched, U ≥ p.
  const int last = 53 - e;
  for (int j = 0; 64 * j < last; ++j) {
    const int shift = 64 * (j + 1) - last;  // < 64 inside the loop
    std::uint64_t word = 0;
    if (shift >= 0) {
      word = m << shift;
    } else if (shift > -64) {
      word = m >> -shift;
    }
    const std::uint64_t u = next_u64();
    if (u != word) return u < word;
  }
  return false;
}

bool SecureStream::bernoulli_exp(std::uint64_t num, std::uint64_t den) {
  AEGIS_CHECK(den >= 1, "bernoulli_exp: denominator " << den << " must be at least 1");
  return bernoulli_exp_u128(*this, num, den);
}

std::int64_t discrete_gaussian(SecureStream& rng, std::uint64_t sigma_sq) {
  AEGIS_CHECK(sigma_sq >= 1 && sigma_sq <= kMaxDiscreteGaussianVariance,
              "discrete_gaussian: variance " << sigma_sq << " must lie in [1, 2^53]");
  return discrete_gaussian_unchecked(rng, sigma_sq);
}

// ---- the grid Gaussian mechanism ---------------------------------------------------------------

SecureGrid SecureGrid::make(double noise_multiplier, double max_grad_norm) {
  AEGIS_CHECK(std::isfinite(noise_multiplier) && noise_multiplier > 0.0,
              "secure noise: noise_multiplier " << noise_multiplier << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(max_grad_norm) && max_grad_norm > 0.0,
              "secure noise: max_grad_norm " << max_grad_norm << " must be positive and finite");
  const double std_dev = noise_multiplier * max_grad_norm;
  AEGIS_CHECK(std::isnormal(std_dev),
              "secure noise: noise_multiplier·max_grad_norm = " << std_dev << " is not a normal double");
  int e = 0;
  const double f = std::frexp(std_dev, &e);  // std_dev = f·2^e, f ∈ [0.5, 1)
  const int ceil_log2 = f == 0.5 ? e - 1 : e;
  SecureGrid g;
  g.grid = std::ldexp(1.0, ceil_log2 - 26);
  AEGIS_CHECK(std::isnormal(g.grid), "secure noise: σ·C = " << std_dev << " is too small for the grid");
  g.max_grad_norm = max_grad_norm;
  const double x = std_dev / g.grid;  // ∈ (2^25, 2^26], exact: division by a power of two
  // σ·C and x² were each rounded to nearest (relative error ≤ 2^−53 each): a 2^−50 margin before
  // the ceiling makes S ≥ (σC/γ)² for the exact product σ·C.
  g.variance = static_cast<std::uint64_t>(std::ceil(x * x * (1.0 + 0x1p-50)));
  return g;
}

double SecureGrid::effective_noise_multiplier(std::int64_t num_values) const {
  return std::sqrt(static_cast<double>(variance)) / (max_grad_norm / grid + std::sqrt(static_cast<double>(num_values)));
}

double SecureGrid::max_abs_input() const {
  return std::ldexp(grid, 52);
}

void secure_noisy_integers(const float* in, std::int64_t* out, std::int64_t n, const SecureGrid& grid,
                           const SecureKey& key, std::uint32_t purpose, std::uint64_t step, std::uint32_t stream_id) {
  AEGIS_CHECK(grid.grid > 0.0 && grid.variance >= 1 && grid.variance <= kMaxDiscreteGaussianVariance,
              "secure noise: invalid grid (γ " << grid.grid << ", variance " << grid.variance << ")");
  const double max_abs = grid.max_abs_input();
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = in[i];
    if (!(std::fabs(v) < max_abs))
      AEGIS_THROW(NumericError, "secure noise: value " << v << " at index " << i << " of " << n
                                                       << " is non-finite or exceeds the grid's range ±" << max_abs
                                                       << "; nothing was drawn");
  }
  const std::int64_t chunks = (n + kSecureChunk - 1) / kSecureChunk;
  AEGIS_CHECK(chunks <= static_cast<std::int64_t>(std::numeric_limits<std::uint32_t>::max()),
              "secure noise: buffer of " << n << " values has too many chunks");
  const double gamma = grid.grid;
  const std::uint64_t variance = grid.variance;
#pragma omp parallel for schedule(dynamic, 1) if (chunks > 1)
  for (std::int64_t c = 0; c < chunks; ++c) {
    SecureStream rng(key, purpose, step, (static_cast<std::uint64_t>(stream_id) << 32) | static_cast<std::uint64_t>(c));
    const std::int64_t end = std::min(n, (c + 1) * kSecureChunk);
    for (std::int64_t i = c * kSecureChunk; i < end; ++i) {
      // v/γ is exact (γ is a power of two) and |v/γ| < 2^52, so llround is exact too.
      const std::int64_t rounded = std::llround(static_cast<double>(in[i]) / gamma);
      out[i] = rounded + discrete_gaussian_unchecked(rng, variance);
    }
  }
}

void secure_noisy_values(const float* in, float* out, std::int64_t n, const SecureGrid& grid, const SecureKey& key,
                         std::uint32_t purpose, std::uint64_t step, std::uint32_t stream_id) {
  std::vector<std::int64_t> released(static_cast<std::size_t>(n > 0 ? n : 0));
  secure_noisy_integers(in, released.data(), n, grid, key, purpose, step, stream_id);
  for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(grid.grid * static_cast<double>(released[i]));
}

}  // namespace aegis::privacy
