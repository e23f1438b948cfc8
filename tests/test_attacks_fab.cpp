// FAB-T's random restarts and final search (attacks/fab.cpp): restarts never make the result
// worse (the distance found per example does not grow, broken examples stay broken), and the
// final search keeps every returned point misclassified, inside [0, 1] and no farther from x —
// on a linear model it lands on the decision boundary.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "attacks/attacks.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "support/linear_problem.h"
#include "support/testing.h"

namespace aegis {
namespace {

using attacks::AttackResult;

std::vector<float> floats(const Tensor& t) {
  return t.to(Device::cpu()).to_vector<float>();
}

std::vector<float> logits(nn::Module& model, const Tensor& x) {
  return floats(model.forward(nn::Var(x, false)).value());
}

// A ReLU network 24 → 16 → 5 with random weights and 12 inputs in [0.2, 0.8]^24 labelled with its
// own predictions: curved boundaries, where a restart from elsewhere can find a closer point.
struct MlpProblem {
  std::shared_ptr<nn::Sequential> model;
  Tensor x, labels;
};

MlpProblem mlp_problem(std::uint64_t seed) {
  MlpProblem p;
  nn::InitRng rng(seed);
  auto hidden = std::make_shared<nn::Linear>(24, 16, rng);
  auto out = std::make_shared<nn::Linear>(16, 5, rng);
  // Weights in [−2, 2] with the hidden units' kinks through the box's centre, so the classes
  // change inside [0, 1]^24 (default-initialized weights leave one class everywhere).
  const std::vector<float> w1 = floats(testing::random_tensor({16, 24}, seed + 2, -2.0f, 2.0f));
  std::copy(w1.begin(), w1.end(), hidden->weight().value().data<float>());
  for (std::int64_t u = 0; u < 16; ++u) {
    double centre = 0.0;
    for (std::int64_t j = 0; j < 24; ++j) centre += 0.5 * w1[static_cast<std::size_t>(u * 24 + j)];
    hidden->bias().value().data<float>()[u] = static_cast<float>(-centre);
  }
  const std::vector<float> w2 = floats(testing::random_tensor({5, 16}, seed + 3, -2.0f, 2.0f));
  std::copy(w2.begin(), w2.end(), out->weight().value().data<float>());
  std::fill_n(out->bias().value().data<float>(), 5, 0.0f);
  p.model = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Flatten>(), hidden, std::make_shared<nn::ActivationLayer>(nn::ActivationKind::ReLU), out});
  p.x = testing::random_tensor({12, 1, 4, 6}, seed + 1, 0.2f, 0.8f);
  p.labels = nn::argmax(p.model->forward(nn::Var(p.x, false)).value());
  return p;
}

// Every returned point of a success is misclassified, inside [0, 1] and at the reported distance.
void expect_valid(nn::Module& model, const Tensor& x, const Tensor& labels, bool l2, const AttackResult& r) {
  const std::vector<float> a = floats(r.adversarial), x0 = floats(x), dist = floats(r.perturbation_norm);
  const std::vector<std::int32_t> pred = nn::argmax(model.forward(nn::Var(r.adversarial, false)).value())
                                             .to_vector<std::int32_t>(),
                                  y = labels.to_vector<std::int32_t>(), ok = r.success.to_vector<std::int32_t>();
  const std::size_t n = y.size(), d = a.size() / n;
  for (std::size_t i = 0; i < n; ++i) {
    double acc = 0.0;
    for (std::size_t j = 0; j < d; ++j) {
      ASSERT_TRUE(a[i * d + j] >= 0.0f && a[i * d + j] <= 1.0f) << a[i * d + j];
      const double e = static_cast<double>(a[i * d + j]) - x0[i * d + j];
      acc = l2 ? acc + e * e : std::max(acc, std::fabs(e));
    }
    if (!ok[i]) continue;
    EXPECT_NE(pred[i], y[i]) << "example " << i;
    EXPECT_NEAR(dist[i], l2 ? std::sqrt(acc) : acc, 1e-6) << "example " << i;
  }
}

TEST(FabRestarts, NeverMakeTheResultWorse) {
  const MlpProblem p = mlp_problem(71);
  for (const char* norm : {"linf", "l2"}) {
    const bool l2 = norm == std::string("l2");
    attacks::FabOptions o;
    o.attack.norm = parse_norm(norm);
    o.attack.steps = 10;
    o.target_classes = 2;
    o.attack.seed = 3;
    const AttackResult one = attacks::fab_targeted(*p.model, p.x, p.labels, o);
    o.attack.restarts = 4;
    const AttackResult four = attacks::fab_targeted(*p.model, p.x, p.labels, o);
    expect_valid(*p.model, p.x, p.labels, l2, one);
    expect_valid(*p.model, p.x, p.labels, l2, four);
    // Minimal-norm use (no ε): the closest distance per example never grows with restarts.
    const std::vector<float> d1 = floats(one.final_loss), d4 = floats(four.final_loss);
    const std::vector<std::int32_t> s1 = one.success.to_vector<std::int32_t>(),
                                    s4 = four.success.to_vector<std::int32_t>();
    int closer = 0;
    for (std::size_t i = 0; i < d1.size(); ++i) {
      EXPECT_LE(d4[i], d1[i]) << norm << " example " << i;
      EXPECT_GE(s4[i], s1[i]) << norm << " example " << i;
      closer += d4[i] < d1[i];
    }
    EXPECT_GT(closer, 0) << norm << ": the restarts found no closer point anywhere";
    // At a radius: the examples broken in one run stay broken, inside the ball.
    o.attack.eps = Tensor::full({1}, l2 ? 0.5f : 0.05f);
    o.attack.restarts = 1;
    const AttackResult at1 = attacks::fab_targeted(*p.model, p.x, p.labels, o);
    o.attack.restarts = 4;
    const AttackResult at4 = attacks::fab_targeted(*p.model, p.x, p.labels, o);
    expect_valid(*p.model, p.x, p.labels, l2, at4);
    const std::vector<std::int32_t> b1 = at1.success.to_vector<std::int32_t>(),
                                    b4 = at4.success.to_vector<std::int32_t>();
    const std::vector<float> n4 = floats(at4.perturbation_norm);
    for (std::size_t i = 0; i < b1.size(); ++i) {
      EXPECT_GE(b4[i], b1[i]) << norm << " example " << i;
      if (b4[i]) {
        EXPECT_LE(n4[i], (l2 ? 0.5 : 0.05) + 1e-6) << norm << " example " << i;
      }
    }
  }
}

TEST(FabFinalSearch, KeepsPointsAdversarialInTheBoxAndNoFarther) {
  const MlpProblem p = mlp_problem(83);
  for (const char* norm : {"linf", "l2"}) {
    const bool l2 = norm == std::string("l2");
    attacks::FabOptions o;
    o.attack.norm = parse_norm(norm);
    o.attack.steps = 3;  // few iterations: the points found are still short of the boundary
    o.target_classes = 2;
    const AttackResult plain = attacks::fab_targeted(*p.model, p.x, p.labels, o);
    o.final_search_steps = 3;
    const AttackResult searched = attacks::fab_targeted(*p.model, p.x, p.labels, o);
    expect_valid(*p.model, p.x, p.labels, l2, searched);
    const std::vector<float> d0 = floats(plain.final_loss), d3 = floats(searched.final_loss);
    const std::vector<std::int32_t> s0 = plain.success.to_vector<std::int32_t>(),
                                    s3 = searched.success.to_vector<std::int32_t>();
    int closer = 0;
    for (std::size_t i = 0; i < d0.size(); ++i) {
      EXPECT_EQ(s3[i], s0[i]) << norm << " example " << i;
      EXPECT_LE(d3[i], d0[i]) << norm << " example " << i;
      closer += d3[i] < d0[i];
    }
    EXPECT_GT(closer, 0) << norm;
  }
}

TEST(FabFinalSearch, LandsOnTheBoundaryOfALinearModel) {
  testing::LinearProblem p = testing::linear_problem(5, 10, 0.0f, 509, false, 80);
  for (const char* norm : {"linf", "l2"}) {
    attacks::FabOptions o;
    o.attack.norm = parse_norm(norm);
    o.attack.steps = 2;
    o.final_search_steps = 3;
    const AttackResult r = attacks::fab_targeted(*p.model, p.x, p.labels, o);
    const std::vector<float> z = logits(*p.model, r.adversarial);
    const std::vector<std::int32_t> y = p.labels.to_vector<std::int32_t>();
    for (std::size_t i = 0; i < y.size(); ++i) {
      ASSERT_EQ(r.success.to_vector<std::int32_t>()[i], 1);
      float other = -1e30f;
      for (std::size_t c = 0; c < 5; ++c)
        if (static_cast<std::int32_t>(c) != y[i]) other = std::max(other, z[i * 5 + c]);
      // Along a segment the margin of a linear model is linear: each step of the search leaves
      // 1% of the adversarial margin, so three steps leave ≤ 1e-6 of FAB's (logits of size ~1),
      // plus float rounding of the point (24 inputs, ~1e-7 each).
      EXPECT_GE(other - z[i * 5 + static_cast<std::size_t>(y[i])], 0.0f) << norm << " example " << i;
      EXPECT_LE(other - z[i * 5 + static_cast<std::size_t>(y[i])], 1e-4f) << norm << " example " << i;
    }
  }
}

}  // namespace
}  // namespace aegis
