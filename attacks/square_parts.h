// Parts of the Square attack (attacks/square.cpp; Andriushchenko et al. 2020): the image
// geometry, the Philox streams a proposal reads, where a window goes, and the L2 machinery (the
// pseudo-Gaussian blocks of Eq. 4, the initial grid and the mass-moving proposal of Alg. 3).
// Internal to attacks/: the public entry point is attacks::square.
// A proposal reads two streams: `place` (window offsets, the block's orientation; L∞: also the
// per-channel signs) and `signs` (L2: the per-channel signs). With per-example proposals both are
// the example's own stream, one object; with shared proposals `place` is a copy of the batch's
// stream, identical for every example of the iteration, so every example draws the same windows.
#pragma once

#include <cstdint>
#include <vector>

#include "core/philox.h"
#include "runtime/tensor.h"

namespace aegis::attacks::square_parts {

struct Geometry {
  std::int64_t c = 1, h = 1, w = 1;
};
// [N, C, H, W] → (C, H, W); [N, H, W] → (1, H, W); anything else → one row (1, 1, d).
Geometry geometry(const Tensor& x);

// One Philox stream: word `next` after `base` of key (seed, kPurposeSquare, iteration).
struct Draws {
  philox::Key key;
  std::uint64_t base;
  std::uint32_t next = 0;
  std::uint32_t bits() { return philox::bits(key, base + next++); }
  double uniform() { return (bits() >> 8) * (1.0 / 16777216.0); }
  std::int64_t below(std::int64_t n) { return static_cast<std::int64_t>(bits() % static_cast<std::uint32_t>(n)); }
  float sign() { return (bits() & 1u) ? 1.0f : -1.0f; }
};

// The stream of example i (its position in the batch) at `iteration`, and the batch's stream,
// which lies above every example's counters.
Draws example_draws(std::uint64_t seed, int iteration, std::int64_t i);
Draws batch_draws(std::uint64_t seed, int iteration);

// The offset of an s-wide window along an axis of `extent`: uniform in {0, …, extent − s} (Alg. 2,
// line 5), or with `reference_range` in {0, …, extent − s − 1} (0 when s = extent), the range the
// official code's torch.rand·(extent − s), truncated, gives: its windows never reach the last
// row and column. On Fashion-MNIST that alone makes the official Square 3.5 points less
// successful than the paper's range (bench/RESULTS.md); the shared mode copies it to agree.
std::int64_t window_offset(Draws& draws, std::int64_t extent, std::int64_t s, bool reference_range);

// The s×s pseudo-Gaussian block: η (Eq. 4, nested rectangles weighted 1/(k+1)²) on the top half,
// −η on the bottom, unit L2 norm, transposed with probability ½ (one draw of `draws`).
std::vector<double> pseudo_gaussian(std::int64_t s, Draws& draws);

// L2 start (Alg. 3's initialization): a grid of pseudo-Gaussian blocks (side min(h, w)/5, one
// block drawn from `place` per grid cell) with a random sign per cell and channel (from `signs`),
// scaled to ‖δ‖₂ = ε, then clipped to [0, 1]. Writes the d values of `row`.
void l2_start(const Geometry& g, double eps, const float* x0, Draws& place, Draws& signs, float* row);

// One L2 proposal of side s (Alg. 3, lines 5–11): windows W1 and W2 drawn from `place`; W1 gets
// a fresh block (one per iteration, from `place`, a sign per channel from `signs`) plus W1's old
// mass renormalized, W2 is emptied, and the new window's norm per channel is what the ball leaves
// free plus the mass of both windows; the result is rescaled to ‖δ‖₂ = ε and clipped to [0, 1],
// shrunk if float rounding would leave the ball. `row` holds x_best on entry, the proposal after.
void l2_proposal(const Geometry& g, std::int64_t s, double eps, const float* x0, Draws& place, Draws& signs,
                 bool reference_range, float* row);

}  // namespace aegis::attacks::square_parts
