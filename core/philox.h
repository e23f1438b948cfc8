// Philox-4x32-10 counter-based generator (Salmon, Moraes, Dror, Shaw, "Parallel random numbers:
// as easy as 1, 2, 3", SC 2011, §4.2), written once as host+device code so that the CPU and the
// GPU draw identical numbers for the same key.
//
// aegis keys every draw by (seed, purpose, step, element index) — never by thread id:
//   key     = (seed low 32 bits, seed high 32 bits)
//   counter = (block low 32, block high 32, step, purpose)
// where `block` is the element index divided by the number of elements one Philox call serves.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define AEGIS_HD __host__ __device__ __forceinline__
#else
#define AEGIS_HD inline
#endif

namespace aegis::philox {

struct U32x4 {
  std::uint32_t v[4];
};

AEGIS_HD void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

// One Philox-4x32-R evaluation: 10 rounds of the S-box with the Weyl key schedule.
AEGIS_HD U32x4 philox4x32_10(U32x4 ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  // Round i uses the key plus i Weyl increments; bumping after every round (the last bump is
  // unused) keeps the loop body branch-free, so the compiler unrolls and vectorizes it.
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mulhilo(M0, ctr.v[0], hi0, lo0);
    mulhilo(M1, ctr.v[2], hi1, lo1);
    ctr = U32x4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += W0;
    k1 += W1;
  }
  return ctr;
}

// The purposes a draw can serve; each gets its own counter space.
enum Purpose : std::uint32_t {
  kPurposeGeneric = 0,
  kPurposeInit = 1,           // parameter initialization
  kPurposeShuffle = 2,        // data order
  kPurposeDpNoise = 3,        // DP-SGD Gaussian noise
  kPurposeSampling = 4,       // Poisson sampling decisions
  kPurposeAttackStart = 5,    // random starts of attacks
  kPurposeSmoothing = 6,      // randomized-smoothing samples (+16·phase: 6, 22, 38; certify/smoothing.cpp)
  kPurposeAugmentNoise = 7,   // Gaussian data augmentation
  kPurposePixelDp = 9,        // PixelDP noise layers (certify/pixeldp.h)
  kPurposeSquare = 10,        // Square attack windows and signs (attacks/square.cpp)
  kPurposeAuditSetup = 12,    // privacy audits: canary and shadow-model choices (step = which choice)
  kPurposeAuditSampling = 13, // privacy audits: per-step canary sampling (keyed by step_key)
  kPurposeDpAugment = 14,     // DP-SGD augmentation noise on sampled examples (keyed by step_key)
  kPurposeDpAugmentGeometry = 15,  // DP-SGD crops and flips of sampled examples (keyed by step_key)
  kPurposeAugmentGeometry = 16,    // crops and flips of plain training (nn/train.h)
};

struct Key {
  std::uint64_t seed = 0;
  std::uint32_t purpose = kPurposeGeneric;
  std::uint32_t step = 0;
};

// The key of a 64-bit step (DP-SGD's global step): the low 32 bits fill the step word and the high
// bits go above the purpose in the purpose word. The purposes keyed this way (DP noise, sampling)
// are below 256 and no purpose shares their low byte, so keys never collide, and a step below 2^32
// keeps exactly the key {seed, purpose, step} it always had. Steps must not exceed kMaxKeyedStep.
constexpr std::uint64_t kMaxKeyedStep = (std::uint64_t{1} << 56) - 1;
AEGIS_HD Key step_key(std::uint64_t seed, std::uint32_t purpose, std::uint64_t step) {
  return Key{seed, purpose | (static_cast<std::uint32_t>(step >> 32) << 8), static_cast<std::uint32_t>(step)};
}

AEGIS_HD U32x4 block(const Key& key, std::uint64_t block_index) {
  return philox4x32_10(U32x4{{static_cast<std::uint32_t>(block_index), static_cast<std::uint32_t>(block_index >> 32),
                              key.step, key.purpose}},
                       static_cast<std::uint32_t>(key.seed), static_cast<std::uint32_t>(key.seed >> 32));
}

// Uniform float in [0, 1) for element `index`: 24 random bits, 4 elements per Philox call.
AEGIS_HD float uniform(const Key& key, std::uint64_t index) {
  const U32x4 r = block(key, index >> 2);
  return static_cast<float>(r.v[index & 3] >> 8) * (1.0f / 16777216.0f);
}

// Uniform 32-bit integer for element `index`.
AEGIS_HD std::uint32_t bits(const Key& key, std::uint64_t index) {
  return block(key, index >> 2).v[index & 3];
}

// Uniform double in (0, 1] from 53 random bits.
AEGIS_HD double open_unit(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t m = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  return (static_cast<double>(m) + 1.0) * (1.0 / 9007199254740992.0);
}

// Standard normal for element `index`, by the Box-Muller transform on two 53-bit uniforms
// (Box & Muller 1958: z0 = sqrt(-2 ln u1) cos(2π u2), z1 = sqrt(-2 ln u1) sin(2π u2)). Two
// elements share one Philox call; the transform runs in double, and the CPU and GPU results agree
// after rounding to float except in rare elements, which differ by one float ulp: CUDA's double
// log/sin/cos are within 1–2 ulp of correctly rounded, glibc's within 1, so the two doubles can
// straddle a float rounding boundary. (The smoothing noise, kernels/smoothing.h, is bit-identical.)
AEGIS_HD double normal_double(const Key& key, std::uint64_t index) {
  const U32x4 r = block(key, index >> 1);
  const double u1 = open_unit(r.v[0], r.v[1]);
  const double u2 = open_unit(r.v[2], r.v[3]);
  const double radius = sqrt(-2.0 * log(u1));
  const double angle = 6.283185307179586476925 * u2;
  return (index & 1) ? radius * sin(angle) : radius * cos(angle);
}

AEGIS_HD float normal(const Key& key, std::uint64_t index) {
  return static_cast<float>(normal_double(key, index));
}

// Standard Laplace (density ½·e^{−|z|}, variance 2) for element `index`: an exponential variate
// −ln u from a 53-bit uniform u ∈ (0, 1], with a random sign (a Laplace variable is a symmetric
// exponential one). Two elements share one Philox call: element e uses words 2e (high) and
// 2e + 1 (low); the sign is the low word's last bit, which open_unit discards.
AEGIS_HD double laplace_double(const Key& key, std::uint64_t index) {
  const U32x4 r = block(key, index >> 1);
  const std::uint32_t hi = (index & 1) ? r.v[2] : r.v[0];
  const std::uint32_t lo = (index & 1) ? r.v[3] : r.v[1];
  const double magnitude = -log(open_unit(hi, lo));
  return (lo & 1u) ? -magnitude : magnitude;
}

}  // namespace aegis::philox
