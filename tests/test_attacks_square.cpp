// Square's proposals shared by the batch (attacks/square.cpp, the official code's way) against
// per-example ones: one window per iteration for every example still attacked, the offsets'
// ranges, the L2 proposal's emptied window, and the ε-ball and [0, 1] in both norms.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "attacks/attacks.h"
#include "attacks/square_parts.h"
#include "nn/functional.h"
#include "support/linear_problem.h"
#include "support/testing.h"

namespace aegis {
namespace {

using attacks::AttackResult;
using attacks::SquareProposals;
namespace sp = attacks::square_parts;

std::vector<float> floats(const Tensor& t) {
  return t.to(Device::cpu()).to_vector<float>();
}

attacks::SquareOptions options(SquareProposals proposals, const Tensor& eps, int queries, float p_init,
                               std::uint64_t seed) {
  attacks::SquareOptions o;
  o.attack.eps = eps;
  o.attack.seed = seed;
  o.queries = queries;
  o.p_init = p_init;
  o.proposals = proposals;
  return o;
}

// The pixels (positions in the 4×6 image) where any example's point after one iteration differs
// from its start, as (row, column).
std::set<std::pair<int, int>> changed_pixels(const AttackResult& start, const AttackResult& after) {
  const std::vector<float> a = floats(start.adversarial), b = floats(after.adversarial);
  std::set<std::pair<int, int>> out;
  for (std::size_t k = 0; k < a.size(); ++k)
    if (a[k] != b[k]) out.insert({static_cast<int>(k % 24) / 6, static_cast<int>(k % 24) % 6});
  return out;
}

TEST(SquareProposals, OneWindowServesEveryActiveExampleOfAnIteration) {
  // 0.9× the minimal distance: no example can break, so all twelve stay active.
  testing::LinearProblem p = testing::linear_problem(4, 12, 0.0f, 601, false, 80);
  const Tensor eps = testing::scaled(p.dist_linf, 0.9);
  int per_example_spread = 0;
  for (std::uint64_t seed : {0u, 1u, 2u}) {
    // p_init 0.05 on a 4×6 image: s = round(√1.2) = 1, a single pixel.
    for (SquareProposals mode : {SquareProposals::Shared, SquareProposals::PerExample}) {
      const AttackResult start = attacks::square(*p.model, p.x, p.labels, options(mode, eps, 1, 0.05f, seed));
      const AttackResult after = attacks::square(*p.model, p.x, p.labels, options(mode, eps, 2, 0.05f, seed));
      const auto changed = changed_pixels(start, after);
      if (mode == SquareProposals::Shared) {
        // Some proposals lower the margin of a linear model and are kept; all at the same pixel.
        EXPECT_EQ(changed.size(), 1u) << "seed " << seed;
      } else {
        per_example_spread = std::max(per_example_spread, static_cast<int>(changed.size()));
      }
    }
    // A 3×3 window (p_init 0.375: s = 3): the kept changes of all examples fit in one.
    const AttackResult start =
        attacks::square(*p.model, p.x, p.labels, options(SquareProposals::Shared, eps, 1, 0.375f, seed));
    const AttackResult after =
        attacks::square(*p.model, p.x, p.labels, options(SquareProposals::Shared, eps, 2, 0.375f, seed));
    const auto changed = changed_pixels(start, after);
    ASSERT_FALSE(changed.empty()) << "seed " << seed;
    int r0 = 99, r1 = -1, c0 = 99, c1 = -1;
    for (const auto& [r, c] : changed)
      r0 = std::min(r0, r), r1 = std::max(r1, r), c0 = std::min(c0, c), c1 = std::max(c1, c);
    EXPECT_LE(r1 - r0 + 1, 3) << "seed " << seed;
    EXPECT_LE(c1 - c0 + 1, 3) << "seed " << seed;
  }
  // The check can fail: drawn per example, the kept pixels scatter.
  EXPECT_GE(per_example_spread, 2);
}

TEST(SquareProposals, OffsetsCoverThePaperOrTheReferenceRange) {
  for (const bool reference : {false, true}) {
    sp::Draws draws = sp::batch_draws(7, 3);
    std::vector<int> seen(8, 0);
    for (int k = 0; k < 2000; ++k) ++seen[static_cast<std::size_t>(sp::window_offset(draws, 8, 3, reference))];
    // Extent 8, side 3: the paper's offsets are 0..5, the reference's 0..4 (the window never
    // reaches the last column). 2000 draws over 5 or 6 values: ≥ 333 expected each, sd ≈ 17.
    for (int v = 0; v < 8; ++v) {
      if (v <= (reference ? 4 : 5)) {
        EXPECT_GT(seen[static_cast<std::size_t>(v)], 250) << v << (reference ? " reference" : " paper");
      } else {
        EXPECT_EQ(seen[static_cast<std::size_t>(v)], 0) << v << (reference ? " reference" : " paper");
      }
    }
    EXPECT_EQ(sp::window_offset(draws, 5, 5, reference), 0);  // a window as wide as the image
  }
}

// The positions an L2 proposal empties (δ = 0: window 2 outside window 1).
std::set<int> emptied(const std::vector<float>& x0, const std::vector<float>& row) {
  std::set<int> out;
  for (std::size_t k = 0; k < row.size(); ++k)
    if (row[k] == x0[k]) out.insert(static_cast<int>(k));
  return out;
}

TEST(SquareProposals, L2ExamplesEmptyTheSameWindowWhenShared) {
  const sp::Geometry g{1, 8, 8};
  const std::vector<float> x0(64, 0.5f);
  // The start puts ±ε/8 on every pixel (blocks of side 1): no pixel is 0 before the proposal.
  std::set<int> first_shared, first_own;
  for (std::int64_t i : {0, 1}) {
    std::vector<float> row(64);
    sp::Draws own = sp::example_draws(11, 0, i), place0 = sp::batch_draws(11, 0);
    sp::l2_start(g, 1.0, x0.data(), place0, own, row.data());
    ASSERT_TRUE(emptied(x0, row).empty());
    std::vector<float> shared_row = row, own_row = row;
    sp::Draws signs = sp::example_draws(11, 1, i), batch = sp::batch_draws(11, 1);
    sp::l2_proposal(g, 3, 1.0, x0.data(), batch, signs, true, shared_row.data());
    sp::Draws mine = sp::example_draws(11, 1, i);
    sp::l2_proposal(g, 3, 1.0, x0.data(), mine, mine, false, own_row.data());
    for (const std::vector<float>* r : {&shared_row, &own_row}) {
      double sq = 0.0;
      for (std::size_t k = 0; k < 64; ++k) {
        ASSERT_GE((*r)[k], 0.0f);
        ASSERT_LE((*r)[k], 1.0f);
        sq += ((*r)[k] - 0.5) * ((*r)[k] - 0.5);
      }
      EXPECT_LE(std::sqrt(sq), 1.0 + 1e-12);
    }
    const std::set<int> s = emptied(x0, shared_row), o = emptied(x0, own_row);
    EXPECT_FALSE(s.empty());
    if (i == 0) {
      first_shared = s;
      first_own = o;
    } else {
      EXPECT_EQ(s, first_shared);
      EXPECT_NE(o, first_own);  // the example's own windows: not the first example's (for this seed)
    }
  }
}

TEST(SquareProposals, SharedRunsStayInTheBallAndBoxAndRepeat) {
  testing::LinearProblem p = testing::linear_problem(4, 10, 0.0f, 441, false, 80);
  for (const char* norm : {"linf", "l2"}) {
    const bool l2 = norm == std::string("l2");
    attacks::SquareOptions o =
        options(SquareProposals::Shared, testing::scaled(l2 ? p.dist_l2 : p.dist_linf, 3.0), 300, 0.8f, 5);
    o.attack.norm = parse_norm(norm);
    const AttackResult r = attacks::square(*p.model, p.x, p.labels, o);
    const std::vector<float> a = floats(r.adversarial), x0 = floats(p.x), e = floats(o.attack.eps);
    for (std::int64_t i = 0; i < 10; ++i) {
      double acc = 0.0;
      for (std::int64_t j = 0; j < 24; ++j) {
        const double diff = static_cast<double>(a[i * 24 + j]) - x0[i * 24 + j];
        acc = l2 ? acc + diff * diff : std::max(acc, std::fabs(diff));
        ASSERT_TRUE(a[i * 24 + j] >= 0.0f && a[i * 24 + j] <= 1.0f);
      }
      // 1e-6: ε and x ± ε are rounded to float once each.
      EXPECT_LE(l2 ? std::sqrt(acc) : acc, e[static_cast<std::size_t>(i)] + 1e-6) << norm << " example " << i;
    }
    // Success is misclassification, and 3× the minimal distance is found for nearly every example
    // (not all: with the reference's offsets an L2 window, side ≥ 3, never covers the 4th row of
    // this 4-row image).
    const std::vector<std::int32_t> pred =
        nn::argmax(p.model->forward(nn::Var(r.adversarial, false)).value()).to_vector<std::int32_t>();
    const std::vector<std::int32_t> y = p.labels.to_vector<std::int32_t>(), ok = r.success.to_vector<std::int32_t>();
    int broken = 0;
    for (std::size_t i = 0; i < 10; ++i) {
      EXPECT_EQ(ok[i], pred[i] != y[i]) << norm << " example " << i;
      broken += ok[i];
    }
    EXPECT_GE(broken, 8) << norm;
    const AttackResult again = attacks::square(*p.model, p.x, p.labels, o);
    EXPECT_EQ(floats(again.adversarial), a) << norm;
  }
}

TEST(SquareProposals, NamesRoundTrip) {
  for (SquareProposals m : {SquareProposals::Shared, SquareProposals::PerExample})
    EXPECT_EQ(attacks::parse_square_proposals(attacks::square_proposals_name(m)), m);
  EXPECT_THROW(attacks::parse_square_proposals("sideways"), InvalidArgument);
}

}  // namespace
}  // namespace aegis
