// APGD-T, Square, EOT, AutoAttack and the per-example TSV against the oracle of a linear
// classifier z = W·x + b: an example of class y first changes its prediction at the L∞ distance
// min_{j≠y} (z_y − z_j)/‖w_y − w_j‖₁ (L2: ‖·‖₂) when the box [0, 1] does not bind, so no attack
// may break it inside 0.95× that radius, and a complete attack breaks it at a larger one.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "attacks/attacks.h"
#include "attacks/autoattack.h"
#include "attacks/evaluate.h"
#include "attacks/per_example.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/quantize.h"
#include "support/linear_problem.h"
#include "support/testing.h"

namespace aegis {
namespace {

using attacks::AttackResult;

std::vector<float> floats(const Tensor& t) {
  return t.to(Device::cpu()).to_vector<float>();
}

std::vector<std::int32_t> predictions(nn::Module& model, const Tensor& x) {
  return nn::argmax(model.forward(nn::Var(x, false)).value()).to(Device::cpu()).to_vector<std::int32_t>();
}

using Problem = testing::LinearProblem;
using testing::scaled;

// The problems of tests/support/linear_problem.h, drawn from 80·N candidates.
Problem problem(std::int64_t k, std::int64_t n, std::uint64_t seed) {
  return testing::linear_problem(k, n, 0.0f, seed, false, 80);
}

// Every point in the ball and in [0, 1], the reported norm, and success = misclassified.
void expect_invariants(nn::Module& model, const Tensor& x, const Tensor& labels, const Tensor& eps, bool l2,
                       const AttackResult& r) {
  const std::int64_t n = x.size(0), d = x.numel() / n;
  ASSERT_EQ(r.adversarial.shape(), x.shape());
  const std::vector<float> a = floats(r.adversarial), x0 = floats(x), e = floats(eps),
                           reported = floats(r.perturbation_norm);
  for (std::int64_t i = 0; i < n; ++i) {
    double acc = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double diff = static_cast<double>(a[i * d + j]) - x0[i * d + j];
      acc = l2 ? acc + diff * diff : std::max(acc, std::fabs(diff));
      ASSERT_TRUE(a[i * d + j] >= 0.0f && a[i * d + j] <= 1.0f) << a[i * d + j];
    }
    if (l2) acc = std::sqrt(acc);
    // 1e-6: ε and x ± ε are rounded to float once each.
    EXPECT_LE(acc, e[e.size() == 1 ? 0 : i] + 1e-6) << "example " << i;
    EXPECT_NEAR(reported[i], acc, 1e-6 * (1.0 + acc)) << "example " << i;
  }
  const std::vector<std::int32_t> pred = predictions(model, r.adversarial), y = labels.to_vector<std::int32_t>(),
                                  ok = r.success.to_vector<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i) EXPECT_EQ(ok[i], pred[i] != y[i]) << "example " << i;
}

// ---- APGD-T ---------------------------------------------------------------------------------

TEST(ApgdT, BreaksAFiveClassLinearModelExactlyAboveTheMinimalDistance) {
  Problem p = problem(5, 12, 401);
  for (const char* norm : {"linf", "l2"}) {
    const bool l2 = norm == std::string("l2");
    for (double factor : {0.95, 1.05}) {
      attacks::ApgdOptions o;
      o.attack.norm = parse_norm(norm);
      o.attack.eps = scaled(l2 ? p.dist_l2 : p.dist_linf, factor);
      o.attack.steps = 50;
      o.attack.seed = 3;
      const AttackResult r = attacks::apgd_targeted(*p.model, p.x, p.labels, o);
      expect_invariants(*p.model, p.x, p.labels, o.attack.eps, l2, r);
      for (std::int32_t s : r.success.to_vector<std::int32_t>())
        EXPECT_EQ(s, factor > 1.0 ? 1 : 0) << norm << " ×" << factor;
      // Nothing breaks inside the radius: every target run (K − 1 = 4) runs every example.
      if (factor < 1.0) {
        EXPECT_EQ(r.gradient_evaluations, 4 * 50 * 12) << norm;
      }
    }
  }
}

TEST(ApgdT, LaterTargetRunsOnlyAttackUnbrokenExamples) {
  Problem p = problem(5, 12, 411);
  attacks::ApgdOptions o;
  o.attack.eps = attacks::broadcast_per_example(0.5f, 12);  // far outside every decision boundary
  o.attack.steps = 20;
  const AttackResult r = attacks::apgd_targeted(*p.model, p.x, p.labels, o, 9);
  EXPECT_EQ(attacks::robust_accuracy(r), 0.0);
  // Each example breaks in the first run, within its first iterations: later runs see nobody.
  EXPECT_LE(r.gradient_evaluations, 20 * 12);
}

TEST(ApgdT, NeedsFourClasses) {
  Problem p = problem(3, 4, 421);
  attacks::ApgdOptions o;
  o.attack.eps = attacks::broadcast_per_example(0.1f, 4);
  EXPECT_THROW(attacks::apgd_targeted(*p.model, p.x, p.labels, o), ShapeError);
  EXPECT_THROW(attacks::apgd_targeted(*p.model, p.x, p.labels, o, 0), InvalidArgument);
}

// ---- FAB-T ----------------------------------------------------------------------------------

TEST(FabT, FindsNearlyTheMinimalDistanceOfALinearModel) {
  Problem p = problem(5, 10, 501);
  for (const char* norm : {"linf", "l2"}) {
    const bool l2 = norm == std::string("l2");
    const std::vector<double>& dist = l2 ? p.dist_l2 : p.dist_linf;
    attacks::FabOptions o;
    o.attack.norm = parse_norm(norm);
    o.attack.steps = 20;
    // Unbounded: the closest misclassified point found. For a linear model the projection onto
    // the nearest class's hyperplane is exact, so FAB lands at the minimal distance up to η = 1.05
    // and the backward steps that shrink it again.
    const AttackResult r = attacks::fab_targeted(*p.model, p.x, p.labels, o);
    const std::vector<float> found = floats(r.final_loss);
    for (std::size_t i = 0; i < dist.size(); ++i) {
      EXPECT_GE(found[i], dist[i] * (1.0 - 1e-5)) << norm << " " << i;  // never below the true minimum
      EXPECT_LE(found[i], dist[i] * 1.06) << norm << " " << i;
    }
    for (std::int32_t s : r.success.to_vector<std::int32_t>()) EXPECT_EQ(s, 1);
    // At a radius: broken exactly when the radius allows, and the points lie in the ball.
    for (double factor : {0.95, 1.1}) {
      o.attack.eps = scaled(dist, factor);
      const AttackResult at = attacks::fab_targeted(*p.model, p.x, p.labels, o);
      expect_invariants(*p.model, p.x, p.labels, o.attack.eps, l2, at);
      for (std::int32_t s : at.success.to_vector<std::int32_t>()) EXPECT_EQ(s, factor > 1.0 ? 1 : 0) << norm;
    }
  }
}

// ---- EOT ------------------------------------------------------------------------------------

TEST(Eot, DrawsOfADeterministicModelAverageToTheSameRun) {
  Problem p = problem(4, 6, 431);
  attacks::ApgdOptions o;
  o.attack.eps = scaled(p.dist_linf, 0.9);
  o.attack.steps = 10;
  const AttackResult one = attacks::apgd(*p.model, p.x, p.labels, o);
  o.attack.eot_draws = 3;
  const AttackResult three = attacks::apgd(*p.model, p.x, p.labels, o);
  EXPECT_EQ(three.gradient_evaluations, 3 * one.gradient_evaluations);
  // The mean of three equal gradients is that gradient up to float rounding of (g + g + g)/3,
  // which a sign step (L∞) does not see.
  EXPECT_EQ(floats(three.adversarial), floats(one.adversarial));
  o.attack.eot_draws = 0;
  EXPECT_THROW(attacks::apgd(*p.model, p.x, p.labels, o), InvalidArgument);
}

// A randomized model in its simplest form: draws alternate between two linear models A and B.
class AlternatingModel : public nn::Module {
 public:
  AlternatingModel(std::shared_ptr<nn::Module> a, std::shared_ptr<nn::Module> b)
      : m_a(register_module("a", std::move(a))), m_b(register_module("b", std::move(b))) {}
  nn::Var forward(const nn::Var& x) override { return (m_calls++ % 2 == 0 ? m_a : m_b)->forward(x); }
  std::string kind() const override { return "AlternatingModel"; }

 private:
  std::shared_ptr<nn::Module> m_a, m_b;
  std::int64_t m_calls = 0;
};

std::vector<float> input_gradient(nn::Module& model, const Tensor& x, const Tensor& y) {
  nn::Var input(x, true);
  autograd::backward(nn::F::cross_entropy(model.forward(input), y, nn::Reduction::Sum));
  return floats(input.grad());
}

TEST(Eot, FgsmStepsAlongTheMeanGradientOfTheDraws) {
  // B's logits are twice A's: the same prediction (so success does not depend on the draw), but
  // a different softmax, hence with three classes a gradient of a different direction.
  Problem pa = problem(3, 16, 481);
  nn::InitRng rng(0);
  auto doubled = std::make_shared<nn::Linear>(24, 3, rng);
  const std::vector<nn::Var> params = pa.model->parameters();
  ASSERT_EQ(params.size(), 2u);
  for (std::size_t k = 0; k < 2; ++k) {
    const std::vector<float> v = floats(params[k].value());
    float* dst = (k == 0 ? doubled->weight() : doubled->bias()).value().data<float>();
    for (std::size_t j = 0; j < v.size(); ++j) dst[j] = 2.0f * v[j];
  }
  auto model_b = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Flatten>(), doubled});
  AlternatingModel model(pa.model, model_b);
  const Tensor& x = pa.x;
  const std::vector<float> ga = input_gradient(*pa.model, x, pa.labels), gb = input_gradient(*model_b, x, pa.labels);
  attacks::AttackOptions o;
  o.eps = attacks::broadcast_per_example(0.25f, 16);
  o.eot_draws = 2;
  // The step's gradient is taken on two consecutive draws: one of A and one of B.
  const AttackResult r = attacks::fgsm(model, x, pa.labels, o);
  EXPECT_EQ(r.gradient_evaluations, 2 * 16);
  const std::vector<float> adv = floats(r.adversarial), x0 = floats(x);
  const std::vector<std::int32_t> ok = r.success.to_vector<std::int32_t>();
  std::int64_t checked = 0, differs_from_a = 0, differs_from_b = 0;
  for (std::size_t i = 0; i < 16; ++i) {
    if (!ok[i]) continue;  // a failed step keeps the clean point
    ++checked;
    for (std::size_t j = 0; j < 24; ++j) {
      const std::size_t e = i * 24 + j;
      const double mean = 0.5 * (static_cast<double>(ga[e]) + gb[e]);
      if (mean == 0.0) continue;
      const float expected = std::clamp(x0[e] + (mean > 0 ? 0.25f : -0.25f), 0.0f, 1.0f);
      EXPECT_FLOAT_EQ(adv[e], expected) << i << " " << j;
      differs_from_a += (mean > 0) != (ga[e] > 0);
      differs_from_b += (mean > 0) != (gb[e] > 0);
    }
  }
  EXPECT_GE(checked, 8);
  // The test tells the mean from either draw's gradient alone (one draw would fail it).
  EXPECT_GT(differs_from_a, 0);
  EXPECT_GT(differs_from_b, 0);
}

// A randomized model whose draws cycle A, A, B with B = −A: any three consecutive forward passes
// hold two of A and one of B, so a majority vote over three passes always predicts as A does, while
// a single pass predicts as B on every third call.
class CyclingModel : public nn::Module {
 public:
  explicit CyclingModel(std::shared_ptr<nn::Module> a) : m_a(register_module("a", std::move(a))) {}
  nn::Var forward(const nn::Var& x) override {
    const nn::Var y = m_a->forward(x);
    if (m_calls++ % 3 != 2) return y;
    const std::int64_t k = y.shape()[1];
    std::vector<float> minus(static_cast<std::size_t>(k * k), 0.0f);
    for (std::int64_t i = 0; i < k; ++i) minus[static_cast<std::size_t>(i * k + i)] = -1.0f;
    return nn::F::linear(y, nn::Var(Tensor::from_vector(minus, {k, k})), nn::Var());
  }
  std::string kind() const override { return "CyclingModel"; }

 private:
  std::shared_ptr<nn::Module> m_a;
  std::int64_t m_calls = 0;
};

TEST(Vote, MajorityOverDrawsJudgesARandomizedModel) {
  Problem p = problem(3, 12, 491);
  const std::vector<std::int32_t> labels = p.labels.to_vector<std::int32_t>();
  // Whichever of the three passes is B's (by the phase), the vote predicts as A, while a single
  // pass on B's turn predicts none of the labels.
  for (int phase = 0; phase < 3; ++phase) {
    CyclingModel model(p.model);
    for (int j = 0; j < phase; ++j) model.forward(nn::Var(p.x));
    EXPECT_EQ(attacks::predict_classes(model, p.x, 3), labels) << phase;
  }
  CyclingModel model(p.model);
  model.forward(nn::Var(p.x));
  model.forward(nn::Var(p.x));
  const std::vector<std::int32_t> b_turn = attacks::predict_classes(model, p.x, 1);
  for (std::size_t i = 0; i < labels.size(); ++i) EXPECT_NE(b_turn[i], labels[i]) << i;
  EXPECT_THROW(attacks::predict_classes(model, p.x, 0), InvalidArgument);
  // evaluate() judges clean and adversarial points by the vote.
  nn::Dataset data{"linear", p.x, p.labels, 3};
  attacks::EvaluationOptions o;
  o.method = attacks::AttackMethod::Fgsm;
  o.attack.eps = Tensor::full({1}, 1e-4f);  // far below every minimal distance: nothing breaks
  o.predict_draws = 3;
  CyclingModel fresh(p.model);
  const attacks::Evaluation e = attacks::evaluate(fresh, data, Device::cpu(), 3, o);
  EXPECT_EQ(e.clean_accuracy, 1.0);
  EXPECT_EQ(e.robust_accuracy, 1.0);
}

// ---- BPDA -----------------------------------------------------------------------------------

TEST(Bpda, BreaksABitDepthReductionDefenseThatMasksTheGradient) {
  Problem p = problem(2, 16, 511);
  const std::shared_ptr<nn::Module> defended = nn::with_input_quantization(p.model, 2);  // levels 0, ⅓, ⅔, 1
  const Tensor labels = Tensor::from_vector(predictions(*defended, p.x), {16});
  attacks::AttackOptions o;
  o.eps = attacks::broadcast_per_example(0.4f, 16);  // more than one quantization level
  o.steps = 10;
  // The rounding's derivative is 0: BIM (no random start) never moves, nothing breaks.
  const AttackResult masked = attacks::bim(*defended, p.x, labels, o);
  EXPECT_EQ(attacks::robust_accuracy(masked), 1.0);
  EXPECT_EQ(floats(masked.adversarial), floats(p.x));
  // Through the identity on the backward pass every pixel moves by ε along the linear model's
  // direction, which crosses at least one level each: every example breaks.
  o.bpda = true;
  const AttackResult r = attacks::bim(*defended, p.x, labels, o);
  expect_invariants(*defended, p.x, labels, o.eps, false, r);
  EXPECT_EQ(attacks::robust_accuracy(r), 0.0);
  attacks::ApgdOptions a;
  a.attack = o;
  a.attack.steps = 20;
  EXPECT_EQ(attacks::robust_accuracy(attacks::apgd(*defended, p.x, labels, a)), 0.0);
  // The layer's own mode is restored after the attack.
  nn::Var input(p.x, true);
  autograd::backward(nn::F::cross_entropy(defended->forward(input), labels, nn::Reduction::Sum));
  for (float g : floats(input.grad())) ASSERT_EQ(g, 0.0f);
}

// ---- Square ---------------------------------------------------------------------------------

TEST(Square, ScheduleHalvesPAtTheReferenceIterations) {
  EXPECT_DOUBLE_EQ(attacks::square_fraction(0, 10000, 0.8), 0.8);
  EXPECT_DOUBLE_EQ(attacks::square_fraction(10, 10000, 0.8), 0.8);
  EXPECT_DOUBLE_EQ(attacks::square_fraction(11, 10000, 0.8), 0.4);
  EXPECT_DOUBLE_EQ(attacks::square_fraction(51, 10000, 0.8), 0.2);
  EXPECT_DOUBLE_EQ(attacks::square_fraction(8001, 10000, 0.8), 0.8 / 512);
  // Rescaled to 5000 iterations: iteration 6 is 12 of 10,000.
  EXPECT_DOUBLE_EQ(attacks::square_fraction(5, 5000, 0.8), 0.8);
  EXPECT_DOUBLE_EQ(attacks::square_fraction(6, 5000, 0.8), 0.4);
}

TEST(Square, BreaksOnlyOutsideTheMinimalDistanceAndCountsQueries) {
  Problem p = problem(4, 10, 441);
  for (const char* norm : {"linf", "l2"}) {
    const bool l2 = norm == std::string("l2");
    for (double factor : {0.95, 3.0}) {
      attacks::SquareOptions o;
      o.attack.norm = parse_norm(norm);
      o.attack.eps = scaled(l2 ? p.dist_l2 : p.dist_linf, factor);
      o.queries = 300;
      // Per-example proposals reach every position; the shared mode's reference offsets never put
      // an L2 window on this 4-row image's last row (test_attacks_square.cpp covers that mode).
      o.proposals = attacks::SquareProposals::PerExample;
      const AttackResult r = attacks::square(*p.model, p.x, p.labels, o);
      expect_invariants(*p.model, p.x, p.labels, o.attack.eps, l2, r);
      const std::vector<std::int32_t> ok = r.success.to_vector<std::int32_t>(), q = r.queries.to_vector<std::int32_t>();
      std::int64_t broken = 0;
      for (std::size_t i = 0; i < ok.size(); ++i) {
        EXPECT_GE(q[i], 1) << norm;
        EXPECT_LE(q[i], 300) << norm;
        if (!ok[i]) {
          EXPECT_EQ(q[i], 300) << norm << ": an unbroken example spends the whole budget";
        }
        broken += ok[i];
      }
      if (factor < 1.0) {
        EXPECT_EQ(broken, 0) << norm;
      }
      // 3× the minimal distance leaves a wide region to find by random search; all are found.
      if (factor > 1.0) {
        EXPECT_EQ(broken, 10) << norm;
      }
    }
  }
}

TEST(Square, StopsAtTheFirstSuccessAndSkipsMisclassifiedInputs) {
  Problem p = problem(4, 6, 451);
  std::vector<std::int32_t> y = p.labels.to_vector<std::int32_t>();
  y[2] = (y[2] + 1) % 4;  // a wrong label: misclassified already, never queried
  attacks::SquareOptions o;
  o.attack.eps = attacks::broadcast_per_example(0.45f, 6);
  o.queries = 100;
  const AttackResult r = attacks::square(*p.model, p.x, Tensor::from_vector(y, {6}), o);
  const std::vector<std::int32_t> q = r.queries.to_vector<std::int32_t>();
  EXPECT_EQ(q[2], 0);
  for (std::int32_t s : r.success.to_vector<std::int32_t>()) EXPECT_EQ(s, 1);
  for (std::size_t i = 0; i < q.size(); ++i)
    if (i != 2) {
      EXPECT_LT(q[i], 100) << i;
    }
  // The same seed gives the same run.
  const AttackResult again = attacks::square(*p.model, p.x, Tensor::from_vector(y, {6}), o);
  EXPECT_EQ(floats(again.adversarial), floats(r.adversarial));
}

// ---- AutoAttack -----------------------------------------------------------------------------

nn::Dataset dataset(const Problem& p) {
  nn::Dataset d;
  d.name = "linear";
  d.images = p.x;
  d.labels = p.labels;
  d.num_classes = 5;
  return d;
}

TEST(AutoAttack, WorstCaseOverTheSequenceOnTheLinearOracle) {
  Problem p = problem(5, 12, 461);
  const double smallest = *std::min_element(p.dist_linf.begin(), p.dist_linf.end());
  const double largest = *std::max_element(p.dist_linf.begin(), p.dist_linf.end());
  attacks::AutoAttackOptions o;
  o.steps = 20;
  o.queries = 50;
  o.batch_size = 5;  // three batches, the last one short
  o.keep_adversarial = true;
  o.eps = static_cast<float>(0.95 * smallest);  // inside every example's radius: nothing breaks
  attacks::AutoAttackResult r = attacks::run_autoattack(*p.model, dataset(p), Device::cpu(), o);
  EXPECT_EQ(r.clean_accuracy, 1.0);
  EXPECT_EQ(r.robust_accuracy, 1.0);
  EXPECT_TRUE(r.missing.empty());
  ASSERT_EQ(r.robust_after.size(), 4u);
  for (const attacks::PerExampleRow& row : r.per_example) EXPECT_EQ(row.broken_by, "-");

  o.eps = static_cast<float>(1.05 * largest);  // outside every radius: all break, most by APGD-CE
  r = attacks::run_autoattack(*p.model, dataset(p), Device::cpu(), o);
  EXPECT_EQ(r.robust_accuracy, 0.0);
  ASSERT_EQ(r.per_example.size(), 12u);
  const std::vector<float> a = floats(r.adversarial), x0 = floats(p.x);
  for (std::size_t i = 0; i < 12; ++i) {
    const attacks::PerExampleRow& row = r.per_example[i];
    EXPECT_EQ(row.index, static_cast<std::int64_t>(i));
    EXPECT_NE(row.broken_by, "-");
    EXPECT_NE(row.adversarial_prediction, row.label);
    double dist = 0.0;
    for (std::size_t j = 0; j < 24; ++j)
      dist = std::max(dist, std::fabs(static_cast<double>(a[i * 24 + j]) - x0[i * 24 + j]));
    EXPECT_LE(dist, o.eps + 1e-6);
    EXPECT_NEAR(row.perturbation_norm, dist, 1e-6);
  }
  // Cumulative: robust accuracy after each attack never increases.
  for (std::size_t s = 1; s < r.robust_after.size(); ++s)
    EXPECT_LE(r.robust_after[s].second, r.robust_after[s - 1].second);
}

TEST(AutoAttack, LaterAttacksOnlySeeUnbrokenExamples) {
  Problem p = problem(5, 10, 471);
  // A wrong label for example 0: "clean", and no attack may claim it.
  std::vector<std::int32_t> y = p.labels.to_vector<std::int32_t>();
  y[0] = (y[0] + 1) % 5;
  nn::Dataset data = dataset(p);
  data.labels = Tensor::from_vector(y, {10});
  attacks::AutoAttackOptions o;
  o.steps = 20;
  o.queries = 50;
  std::vector<double> sorted = p.dist_linf;
  std::sort(sorted.begin(), sorted.end());
  o.eps = static_cast<float>(0.5 * (sorted[4] + sorted[5]));  // about half the examples break
  const attacks::AutoAttackResult r = attacks::run_autoattack(*p.model, data, Device::cpu(), o);
  EXPECT_EQ(r.per_example[0].broken_by, "clean");
  std::int64_t broken = 0;
  for (std::size_t i = 0; i < 10; ++i) {
    const bool inside = p.dist_linf[i] > o.eps;
    if (i > 0 && inside) {
      EXPECT_EQ(r.per_example[i].broken_by, "-") << i;
    }
    broken += r.per_example[i].broken_by != "-";
  }
  EXPECT_NEAR(r.robust_accuracy, 1.0 - broken / 10.0, 1e-12);
  EXPECT_EQ(attacks::autoattack_sequence(attacks::AutoAttackVersion::Rand),
            (std::vector<std::string>{"apgd-ce", "apgd-dlr"}));
  EXPECT_THROW(attacks::parse_autoattack_version("fast"), InvalidArgument);
}

// ---- per-example TSV ------------------------------------------------------------------------

TEST(PerExampleTsv, WritesOneRowPerExample) {
  const std::string dir = testing::make_temp_dir("aegis_per_example");
  const std::string path = (std::filesystem::path(dir) / "rows.tsv").string();
  std::vector<attacks::PerExampleRow> rows(2);
  rows[0] = {0, 3, 3, 5, "apgd-t", 0.125};
  rows[1] = {1, 2, 7, 7, "clean", 0.0};
  attacks::write_per_example_tsv(path, rows);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(),
            "idx\tlabel\tclean_predict\tadv_predict\tbroken_by\tperturbation_norm\n"
            "0\t3\t3\t5\tapgd-t\t0.125\n"
            "1\t2\t7\t7\tclean\t0\n");
}

}  // namespace
}  // namespace aegis
