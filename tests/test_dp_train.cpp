// The DP-SGD training loop: privacy ledger (reported ε equals the accountant's, round trip through
// model files, resume composes phases and continues the noise), calibration to a target ε, and
// bad hyperparameters.
#include <cmath>
#include <filesystem>

#include "nn/model_file.h"
#include "nn/zoo.h"
#include "privacy/dp_train.h"
#include "privacy/sampling.h"
#include "core/philox.h"
#include "support/testing.h"

namespace aegis {
namespace {

using testing::toy_dataset;

nn::TrainOptions small_options() {
  nn::TrainOptions o;
  o.epochs = 3;
  o.batch_size = 32;
  o.lr = 0.5f;
  o.optimizer = nn::OptimizerKind::Sgd;
  o.schedule = nn::ScheduleKind::Constant;
  o.seed = 3;
  return o;
}

TEST(DpTrain, ReportsTheAccountantsEpsilonAndLearns) {
  const nn::Dataset data = toy_dataset(512, 1);
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 0.8;
  dp.noise.max_grad_norm = 1.0;
  dp.delta = 1e-3;
  nn::TrainOptions o = small_options();
  o.epochs = 8;
  std::int64_t batches = 0, total_examples = 0;
  const privacy::DpTrainResult r = privacy::train_dp_classifier(
      *model, data, o, dp, nullptr, [&](const privacy::DpStepInfo& s) {
        ++batches;
        total_examples += s.batch_size;
      });
  const double q = 32.0 / 512.0;
  EXPECT_DOUBLE_EQ(r.sampling_rate, q);
  EXPECT_EQ(r.steps, 8 * 16);  // an epoch is round(1/q) = 16 steps
  EXPECT_EQ(batches, r.steps);
  // Poisson batches: the total over 128 steps is Binomial(128·512, q) with mean 4096, sd ≈ 62.
  EXPECT_NEAR(static_cast<double>(total_examples), 4096.0, 5 * 62.0);
  const auto expected = privacy::rdp_epsilon({{0.8, q, r.steps}}, 1e-3);
  EXPECT_DOUBLE_EQ(r.ledger.epsilon, expected.epsilon);
  EXPECT_EQ(r.ledger.steps(), r.steps);
  EXPECT_GT(r.epochs.back().epsilon, r.epochs.front().epsilon);
  // The toy task is linear: even with noise the model ends far above chance.
  EXPECT_GT(nn::evaluate(*model, toy_dataset(512, 9), Device::cpu()).accuracy, 0.75);
}

TEST(DpTrain, LedgerTravelsWithTheModelAndResumeComposes) {
  const std::string path = testing::make_temp_dir("aegis_dp_ledger") + "/ledger.safetensors";
  const nn::Dataset data = toy_dataset(256, 4);
  nn::ModelSpec spec{"mlp", {1, 4, 4}, 2, "", 5};
  auto model = nn::build_model(spec);
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.1;
  dp.delta = 1e-3;
  const privacy::DpTrainResult first = privacy::train_dp_classifier(*model, data, small_options(), dp);
  nn::save_classifier(path, *model, spec, first.ledger.to_metadata());

  nn::LoadedClassifier loaded = nn::load_classifier(path);
  const privacy::PrivacyLedger ledger = privacy::PrivacyLedger::from_metadata(loaded.metadata, path);
  ASSERT_EQ(ledger.phases.size(), 1u);
  EXPECT_EQ(ledger.phases[0].steps, first.steps);
  EXPECT_DOUBLE_EQ(ledger.phases[0].noise_multiplier, 1.1);
  EXPECT_DOUBLE_EQ(ledger.epsilon, first.ledger.epsilon);

  // A second phase with other σ and q: the ledger composes both, and ε grows accordingly.
  privacy::DpTrainOptions dp2 = dp;
  dp2.noise.noise_multiplier = 2.0;
  dp2.sampling_rate = 0.25;
  const privacy::DpTrainResult second = privacy::train_dp_classifier(*loaded.model, data, small_options(), dp2, &ledger);
  ASSERT_EQ(second.ledger.phases.size(), 2u);
  const auto both = privacy::rdp_epsilon(second.ledger.phases, 1e-3);
  EXPECT_DOUBLE_EQ(second.ledger.epsilon, both.epsilon);
  EXPECT_GT(second.ledger.epsilon, first.ledger.epsilon);
  // Resuming under another delta or clipping norm would make the composed ledger meaningless.
  privacy::DpTrainOptions other = dp2;
  other.delta = 1e-4;
  EXPECT_THROW(privacy::train_dp_classifier(*loaded.model, data, small_options(), other, &ledger), InvalidArgument);
  std::filesystem::remove(path);
}

TEST(DpTrain, CalibratesToTargetEpsilonWithoutOvershoot) {
  const nn::Dataset data = toy_dataset(256, 6);
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 7});
  privacy::DpTrainOptions dp;
  dp.target_epsilon = 2.0;
  dp.delta = 1e-3;
  const privacy::DpTrainResult r = privacy::train_dp_classifier(*model, data, small_options(), dp);
  EXPECT_LE(r.ledger.epsilon, 2.0);
  EXPECT_GT(r.ledger.epsilon, 1.9);  // calibration is tight to ~1e-3 in σ
}

TEST(DpTrain, AdaptiveClippingTracksTheNormQuantileAndAccountsSigma) {
  const nn::Dataset data = toy_dataset(1024, 12);
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 13});
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.0;
  dp.delta = 1e-3;
  dp.clipping = privacy::Clipping::Adaptive;
  dp.noise.max_grad_norm = 20.0;  // far above every per-example norm: C must come down
  nn::TrainOptions o = small_options();
  o.batch_size = 128;
  o.epochs = 6;
  std::vector<double> c;
  std::vector<std::int64_t> clipped, sizes;
  const privacy::DpTrainResult r = privacy::train_dp_classifier(*model, data, o, dp, nullptr, [&](const privacy::DpStepInfo& s) {
    c.push_back(s.max_grad_norm);
    clipped.push_back(s.clipped);
    sizes.push_back(s.batch_size);
  });
  ASSERT_EQ(c.size(), 48u);
  EXPECT_DOUBLE_EQ(c.front(), 20.0);
  // With nothing clipped the geometric update shrinks C by about exp(−0.2·0.5) per step.
  EXPECT_LT(c[10], 20.0 * std::exp(-0.1 * 10) * 1.5);
  // Late in training about half of each batch is clipped (target quantile 0.5); averaged over
  // the last 16 steps, with noisy counts (σ_b = 6.4 on ~128): within 0.3 of 0.5.
  double frac = 0;
  for (std::size_t i = 32; i < 48; ++i) frac += static_cast<double>(clipped[i]) / std::max<std::int64_t>(1, sizes[i]);
  EXPECT_NEAR(frac / 16, 0.5, 0.3);
  // The accountant composes σ itself: gradient and count noise together are one Gaussian of σ.
  EXPECT_DOUBLE_EQ(r.ledger.epsilon, privacy::rdp_epsilon({{1.0, 128.0 / 1024, 48}}, 1e-3).epsilon);
  // σ_b must exceed σ/2.
  dp.adaptive.count_noise = 0.4;
  EXPECT_THROW(privacy::train_dp_classifier(*model, data, o, dp), InvalidArgument);
}

TEST(DpTrain, ShuffledBatchesAreFixedSizeAndLabeledInTheLedger) {
  const nn::Dataset data = toy_dataset(256, 14);
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 15});
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.0;
  dp.delta = 1e-3;
  dp.sampling = privacy::Sampling::Shuffle;
  std::vector<std::int64_t> sizes;
  const privacy::DpTrainResult r = privacy::train_dp_classifier(
      *model, data, small_options(), dp, nullptr, [&](const privacy::DpStepInfo& s) { sizes.push_back(s.batch_size); });
  EXPECT_EQ(sizes, std::vector<std::int64_t>(24, 32));  // 3 epochs × 8 batches of exactly 32
  EXPECT_EQ(r.ledger.sampling, privacy::Sampling::Shuffle);
  EXPECT_EQ(r.ledger.to_metadata().at("aegis.dp.sampling"), "shuffle");
  EXPECT_THROW(privacy::parse_sampling("bernoulli"), InvalidArgument);
}

TEST(DpTrain, RejectsOutOfRangeHyperparameters) {
  const nn::Dataset data = toy_dataset(64, 8);
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 9});
  auto expect_bad = [&](privacy::DpTrainOptions dp, nn::TrainOptions o = small_options()) {
    EXPECT_THROW(privacy::train_dp_classifier(*model, data, o, dp), InvalidArgument);
  };
  privacy::DpTrainOptions ok;
  ok.noise.noise_multiplier = 1.0;
  ok.delta = 1e-3;
  auto with = [&](auto change) {
    privacy::DpTrainOptions d = ok;
    change(d);
    return d;
  };
  expect_bad(with([](auto& d) { d.noise.noise_multiplier = -1.0; }));
  expect_bad(with([](auto& d) { d.noise.noise_multiplier = 0.0; }));  // and no target ε
  expect_bad(with([](auto& d) { d.delta = 0.0; }));
  expect_bad(with([](auto& d) { d.delta = 1.0; }));
  expect_bad(with([](auto& d) { d.sampling_rate = 1.5; }));
  expect_bad(with([](auto& d) { d.sampling_rate = -0.1; }));
  expect_bad(with([](auto& d) { d.sampling_rate = 0.0; }));  // unset means batch / N; 0 is an error
  expect_bad(with([](auto& d) { d.noise.max_grad_norm = 0.0; }));
  EXPECT_THROW(privacy::parse_clipping("adaptive-ish"), InvalidArgument);
  EXPECT_THROW(privacy::parse_accountant("moments"), InvalidArgument);
  expect_bad(with([](auto& d) {
    d.noise.noise_multiplier = 0.0;
    d.target_epsilon = -1.0;
  }));
  nn::TrainOptions big = small_options();
  big.batch_size = 65;  // more than the dataset: q would exceed 1
  expect_bad(ok, big);
}

// Noise and sampling are keyed by the full 64-bit step: steps past 2^32 get keys of their own
// (no wrap onto step − 2^32), steps below keep the keys they always had, and a ledger whose steps
// would run past what a key holds is refused.
TEST(DpTrain, StepsAreKeyedWithAllTheirBits) {
  const std::uint64_t seed = 11, wrapped = (std::uint64_t{1} << 32) + 7;
  const philox::Key low = philox::step_key(seed, philox::kPurposeDpNoise, 7);
  EXPECT_EQ(low.purpose, philox::kPurposeDpNoise);
  EXPECT_EQ(low.step, 7u);
  const philox::Key high = philox::step_key(seed, philox::kPurposeDpNoise, wrapped);
  EXPECT_EQ(high.step, 7u);
  EXPECT_NE(high.purpose, low.purpose);
  EXPECT_NE(philox::normal_double(high, 0), philox::normal_double(low, 0));
  EXPECT_NE(privacy::poisson_sample(1000, 0.5, seed, wrapped), privacy::poisson_sample(1000, 0.5, seed, 7));
  EXPECT_EQ(privacy::poisson_sample(1000, 0.5, seed, 7), privacy::poisson_sample(1000, 0.5, seed, std::uint32_t{7}));
}

TEST(DpTrain, StepsBeyondTheKeySpaceAreRefused) {
  const nn::Dataset data = toy_dataset(64, 8);
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 9});
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.0;
  dp.delta = 1e-3;
  privacy::PrivacyLedger previous;
  previous.phases = {{1.0, 0.5, static_cast<std::int64_t>(philox::kMaxKeyedStep) - 1}};
  previous.delta = dp.delta;
  previous.max_grad_norm = dp.noise.max_grad_norm;
  previous.accountant = privacy::Accountant::Rdp;
  previous.clipping = privacy::Clipping::Flat;
  testing::expect_error<InvalidArgument>(
      [&] { privacy::train_dp_classifier(*model, data, small_options(), dp, &previous); },
      std::to_string(philox::kMaxKeyedStep - 1) + " earlier steps", "keys are distinct");
}

}  // namespace
}  // namespace aegis
