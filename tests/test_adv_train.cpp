// Adversarial training (attacks/adv_train.h) and the attack suite (attacks/suite.h) on the bundled
// 8x8 digits with the mlp: PGD AT buys PGD robustness over standard training, fgsm-rs and free AT
// train finite models, the catastrophic-overfitting check restores the best epoch's weights, the
// suite's worst case is a per-example minimum, and its masking checks catch a randomized model.
#include <algorithm>
#include <cmath>
#include <memory>

#include "attacks/adv_train.h"
#include "attacks/suite.h"
#include "kernels/attack_step.h"
#include "nn/functional.h"
#include "nn/zoo.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using attacks::AdvTrainOptions;

const nn::DatasetSplit& digits() {
  static const nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  return split;
}

std::shared_ptr<nn::Module> make_mlp(std::uint64_t seed = 0) {
  nn::ModelSpec spec;
  spec.name = "mlp";
  spec.input_shape = {1, 8, 8};
  spec.num_classes = 10;
  spec.seed = seed;
  return nn::build_model(spec);
}

nn::TrainOptions train_options(std::int64_t epochs) {
  nn::TrainOptions t;
  t.epochs = epochs;
  t.batch_size = 32;
  t.lr = 0.002f;
  t.optimizer = nn::OptimizerKind::Adam;
  t.schedule = nn::ScheduleKind::Cosine;
  return t;
}

double pgd_accuracy(nn::Module& model, const nn::Dataset& data, float eps) {
  attacks::AttackOptions o;
  o.eps = Tensor::full({1}, eps);
  o.steps = 20;
  return attacks::robust_accuracy(attacks::pgd(model, data.images, data.labels, o));
}

bool all_finite(const nn::Module& model) {
  for (const autograd::Var& p : model.parameters())
    if (ops::count_nonfinite(p.value()) != 0) return false;
  return true;
}

TEST(AdvTrain, PgdTrainingImprovesPgdRobustAccuracy) {
  const float eps = 0.2f;
  auto standard = make_mlp();
  nn::train_classifier(*standard, digits().train, train_options(6));
  auto robust = make_mlp();
  AdvTrainOptions adv;
  adv.method = attacks::AdvMethod::Pgd;
  adv.eps = eps;
  adv.steps = 3;
  const attacks::AdvTrainResult r = attacks::train_adversarial(*robust, digits().train, train_options(6), adv);
  EXPECT_EQ(r.epochs.size(), 6u);
  const double acc_standard = pgd_accuracy(*standard, digits().test, eps);
  const double acc_robust = pgd_accuracy(*robust, digits().test, eps);
  std::printf("digits mlp PGD-20 eps %.2f: standard %.3f, PGD AT %.3f; clean AT %.3f\n", eps, acc_standard, acc_robust,
              nn::evaluate(*robust, digits().test, Device::cpu()).accuracy);
  // Margin: measured gap is tens of points; 0.15 leaves room for the 297-example test set.
  EXPECT_GT(acc_robust, acc_standard + 0.15);
}

TEST(AdvTrain, FgsmRsAndFreeTrainFiniteModels) {
  for (const char* method : {"fgsm-rs", "free"}) {
    auto model = make_mlp(1);
    AdvTrainOptions adv;
    adv.method = attacks::parse_adv_method(method);
    adv.eps = 0.1f;
    adv.replays = 4;
    const attacks::AdvTrainResult r = attacks::train_adversarial(*model, digits().train, train_options(4), adv);
    EXPECT_TRUE(all_finite(*model)) << method;
    // Free AT: 4 epochs / 4 replays = 1 pass over the data, each minibatch 4 times.
    if (std::string(method) == "free") {
      EXPECT_EQ(r.epochs.size(), 1u);
      EXPECT_EQ(r.steps, 4 * ((1500 + 31) / 32));
    } else {
      EXPECT_EQ(r.held_out, 150);
      EXPECT_EQ(r.check_robust_accuracy.size(), r.epochs.size());
    }
    // Both must still learn the digits (an untrained mlp scores ~0.1).
    EXPECT_GT(nn::evaluate(*model, digits().test, Device::cpu()).accuracy, 0.5) << method;
  }
}

TEST(AdvTrain, OverfittingCheckKeepsTheBestEpochsWeights) {
  auto model = make_mlp(2);
  AdvTrainOptions adv;
  adv.method = attacks::AdvMethod::FgsmRs;
  adv.eps = 0.3f;
  adv.step_size = 100.0f;  // every FGSM step lands on a corner of the ball: invites catastrophic overfitting
  nn::TrainOptions t = train_options(10);
  t.lr = 0.05f;  // with Adam, large enough to knock the model off its best epoch
  t.schedule = nn::ScheduleKind::Constant;
  const attacks::AdvTrainResult r = attacks::train_adversarial(*model, digits().train, t, adv);
  // Whether the check fires here is up to the data (it did not in our runs); what must hold either
  // way: the model holds the weights of best_epoch, stopping only after a drop of > 20 points.
  ASSERT_GE(r.best_epoch, 1);
  ASSERT_LE(static_cast<std::size_t>(r.best_epoch), r.check_robust_accuracy.size());
  const double best = r.check_robust_accuracy[static_cast<std::size_t>(r.best_epoch - 1)];
  if (r.stopped_early) {
    EXPECT_GT(best - r.check_robust_accuracy.back(), 0.20);
  } else {
    EXPECT_EQ(r.check_robust_accuracy.size(), r.epochs.size());
  }
  // The restored weights reproduce the best epoch's held-out accuracy exactly (same PGD seed).
  const nn::Dataset held = nn::take(digits().train, 1500 - r.held_out, r.held_out);
  attacks::AttackOptions o;
  o.eps = Tensor::full({1}, adv.eps);
  o.step_size = Tensor::full({1}, adv.eps / 4);
  o.steps = 10;
  o.seed = t.seed;
  EXPECT_DOUBLE_EQ(attacks::robust_accuracy(attacks::pgd(*model, held.images, held.labels, o)), best);
}

TEST(AdvTrain, OverfittingCheckStopsAndRestoresTheBestEpoch) {
  // With a zero threshold the check fires at the first epoch whose held-out robust accuracy is
  // below the best so far; with this seed and these settings that happens (fixed, deterministic).
  auto model = make_mlp(2);
  AdvTrainOptions adv;
  adv.method = attacks::AdvMethod::FgsmRs;
  adv.eps = 0.3f;
  adv.step_size = 100.0f;
  adv.overfit_drop = 0.0f;
  nn::TrainOptions t = train_options(10);
  t.lr = 0.05f;
  t.schedule = nn::ScheduleKind::Constant;
  const attacks::AdvTrainResult r = attacks::train_adversarial(*model, digits().train, t, adv);
  ASSERT_TRUE(r.stopped_early) << "held-out robust accuracy never fell in " << r.epochs.size() << " epochs";
  ASSERT_GE(r.check_robust_accuracy.size(), 2u);
  const double best = r.check_robust_accuracy[static_cast<std::size_t>(r.best_epoch - 1)];
  EXPECT_LT(r.check_robust_accuracy.back(), best);
  EXPECT_LT(r.best_epoch, static_cast<std::int64_t>(r.epochs.size()));  // an earlier epoch was restored
  const nn::Dataset held = nn::take(digits().train, 1500 - r.held_out, r.held_out);
  attacks::AttackOptions o;
  o.eps = Tensor::full({1}, adv.eps);
  o.step_size = Tensor::full({1}, adv.eps / 4);
  o.steps = 10;
  o.seed = t.seed;
  EXPECT_DOUBLE_EQ(attacks::robust_accuracy(attacks::pgd(*model, held.images, held.labels, o)), best);
}

TEST(AdvTrain, BadOptionsAreRejected) {
  auto model = make_mlp();
  AdvTrainOptions adv;
  adv.eps = 0.1f;
  EXPECT_THROW(attacks::parse_adv_method("sideways"), InvalidArgument);
  adv.method = attacks::AdvMethod::Pgd;
  adv.eps = -1.0f;
  EXPECT_THROW(attacks::train_adversarial(*model, digits().train, train_options(1), adv), InvalidArgument);
  adv.eps = 0.1f;
  adv.overfit_drop = 1.5f;
  EXPECT_THROW(attacks::train_adversarial(*model, digits().train, train_options(1), adv), InvalidArgument);
}

TEST(Suite, WorstCaseIsAtMostEveryAttack) {
  auto model = make_mlp();
  nn::train_classifier(*model, digits().train, train_options(10));
  attacks::SuiteOptions o;
  o.eps = 0.1f;
  o.steps = 10;
  o.batch_size = 100;
  const attacks::SuiteResult r = attacks::run_suite(*model, digits().test, Device::cpu(), o);
  ASSERT_EQ(r.per_attack.size(), 6u);  // fgsm, bim, pgd, mifgsm, apgd-ce, apgd-dlr
  for (const auto& [name, acc] : r.per_attack) EXPECT_LE(r.robust_accuracy, acc) << name;
  EXPECT_LE(r.robust_accuracy, r.clean_accuracy);
  EXPECT_GT(r.clean_accuracy, 0.85);
  for (const std::string& w : r.warnings) EXPECT_EQ(w.find("randomized"), std::string::npos) << w;
}

// A classifier whose logits carry fresh noise on every call: the textbook randomized defense.
class NoisyModel : public nn::Module {
 public:
  explicit NoisyModel(std::shared_ptr<nn::Module> inner) : m_inner(register_module("inner", std::move(inner))) {}
  autograd::Var forward(const autograd::Var& x) override {
    autograd::Var logits = m_inner->forward(x);
    const Tensor noise = testing::random_tensor(logits.shape(), ++m_calls, -3.0f, 3.0f);
    return nn::F::add(logits, autograd::Var(noise, false));
  }
  std::string kind() const override { return "NoisyModel"; }

 private:
  std::shared_ptr<nn::Module> m_inner;
  std::uint64_t m_calls = 0;
};

TEST(Suite, RandomizedModelTriggersMaskingWarning) {
  auto inner = make_mlp();
  nn::train_classifier(*inner, digits().train, train_options(5));
  NoisyModel noisy(inner);
  attacks::SuiteOptions o;
  o.eps = 0.05f;
  o.steps = 5;
  o.attacks = {attacks::AttackMethod::Fgsm, attacks::AttackMethod::Pgd};
  const attacks::SuiteResult r = attacks::run_suite(noisy, nn::take(digits().test, 0, 100), Device::cpu(), o);
  bool randomized = false;
  for (const std::string& w : r.warnings) randomized |= w.find("randomized model") != std::string::npos;
  EXPECT_TRUE(randomized);
}

// Free AT's two elementwise kernels against their definitions (Shafahi et al. 2019, Alg. 1),
// including δ at ±ε, zero gradients and inputs at the box edges; the CUDA kernels give the same
// floats.
TEST(FreeAdversarialKernels, FollowTheirDefinitionOnBothDevices) {
  const std::int64_t n = 1000;
  const float eps = 0.1f;
  std::vector<float> x = testing::random_tensor({n}, 31, 0.0f, 1.0f).to_vector<float>();
  std::vector<float> delta = testing::random_tensor({n}, 32, -0.1f, 0.1f).to_vector<float>();
  std::vector<float> grad = testing::random_tensor({n}, 33, -1.0f, 1.0f).to_vector<float>();
  x[0] = 0.0f, x[1] = 1.0f, delta[2] = eps, delta[3] = -eps, grad[2] = 1.0f, grad[3] = -1.0f, grad[4] = 0.0f;
  std::vector<float> input(n), updated = delta;
  kernels::cpu::free_input(x.data(), delta.data(), input.data(), n);
  kernels::cpu::free_update(updated.data(), grad.data(), eps, n);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto u = static_cast<std::size_t>(i);
    EXPECT_EQ(input[u], std::clamp(x[u] + delta[u], 0.0f, 1.0f)) << i;
    const float step = grad[u] > 0 ? eps : (grad[u] < 0 ? -eps : 0.0f);
    EXPECT_EQ(updated[u], std::clamp(delta[u] + step, -eps, eps)) << i;
    EXPECT_LE(std::fabs(updated[u]), eps) << i;
  }
  EXPECT_EQ(updated[2], eps);       // stays on the boundary
  EXPECT_EQ(updated[4], delta[4]);  // no gradient, no step

  AEGIS_REQUIRE_GPU();
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    const Tensor d_x = run.input(Tensor::from_vector(x, {n})), d_delta = run.input(Tensor::from_vector(delta, {n}));
    const Tensor d_grad = run.input(Tensor::from_vector(grad, {n}));
    // Clamps and sign steps of floats: exact on both devices.
    Tensor d_input = run.output("input", {n}, testing::kExact);
    AEGIS_DISPATCH(run.device(), free_input(d_x.data<float>(), d_delta.data<float>(), d_input.data<float>(), n));
    AEGIS_DISPATCH(run.device(), free_update(d_delta.data<float>(), d_grad.data<float>(), eps, n));
    run.check("updated delta", d_delta, testing::kExact);
  }));
}

}  // namespace
}  // namespace aegis
