// The library checks its options itself, whoever calls it: a zero divisor (batch size, replays),
// counts whose products leave int64 (epochs × steps per epoch, inputs × draws) and shapes whose
// element count overflows throw aegis errors naming the value, never divide by zero or wrap.
#include <cstdint>
#include <limits>

#include "attacks/adv_train.h"
#include "attacks/suite.h"
#include "certify/pixeldp.h"
#include "nn/train.h"
#include "nn/zoo.h"
#include "privacy/dp_train.h"
#include "core/checked_math.h"
#include "support/testing.h"

namespace aegis {
namespace {

constexpr std::int64_t kHuge = std::numeric_limits<std::int64_t>::max();

nn::Dataset toy_dataset(std::int64_t n) {
  Tensor x = testing::random_tensor({n, 1, 4, 4}, 5, 0.0f, 1.0f);
  std::vector<std::int32_t> y(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) y[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i % 2);
  return nn::Dataset{"toy", x, Tensor::from_vector(y, {n}), 2};
}

nn::TrainOptions small_options() {
  nn::TrainOptions o;
  o.epochs = 1;
  o.batch_size = 8;
  o.lr = 0.1f;
  o.optimizer = nn::OptimizerKind::Sgd;
  o.schedule = nn::ScheduleKind::Constant;
  return o;
}

std::shared_ptr<nn::Module> toy_model() {
  return nn::build_model({"mlp", {1, 4, 4}, 2, "", 1});
}

TEST(OptionChecks, ZeroBatchSizeIsAnErrorInEveryTrainingLoop) {
  const nn::Dataset data = toy_dataset(32);
  nn::TrainOptions o = small_options();
  o.batch_size = 0;
  testing::expect_error<InvalidArgument>([&] { nn::train_classifier(*toy_model(), data, o); }, "batch size 0",
                                         "at least 1");
  attacks::AdvTrainOptions adv;
  adv.eps = 0.1f;
  testing::expect_error<InvalidArgument>([&] { attacks::train_adversarial(*toy_model(), data, o, adv); },
                                         "batch size 0", "at least 1");
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.0;
  dp.delta = 1e-3;
  testing::expect_error<InvalidArgument>([&] { privacy::train_dp_classifier(*toy_model(), data, o, dp); },
                                         "batch size 0", "at least 1");
  certify::PixelDpParams params;
  params.eps = 1.0;
  params.delta = 0.05;
  params.L = 0.1;
  certify::PixelDpTrainOptions po;
  po.train = o;
  auto net = certify::build_pixeldp({"mlp", {1, 4, 4}, 2, "relu", 1}, 0, params, 1);
  testing::expect_error<InvalidArgument>([&] { certify::train_pixeldp(*net, data, po); }, "batch size 0", "at least 1");
}

TEST(OptionChecks, ZeroReplaysOfFreeAdversarialTrainingIsAnError) {
  attacks::AdvTrainOptions adv;
  adv.method = attacks::AdvMethod::Free;
  adv.eps = 0.1f;
  adv.replays = 0;
  testing::expect_error<InvalidArgument>(
      [&] { attacks::train_adversarial(*toy_model(), toy_dataset(32), small_options(), adv); }, "replays 0",
      "at least 1");
}

TEST(OptionChecks, StepCountsThatOverflowAreErrors) {
  nn::TrainOptions o = small_options();
  o.epochs = kHuge;
  EXPECT_THROW(nn::total_train_steps(1000, o), InvalidArgument);
  testing::expect_error<InvalidArgument>([&] { nn::train_classifier(*toy_model(), toy_dataset(32), o); },
                                         "steps per epoch × epochs", "does not fit in 64 bits");
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.0;
  dp.delta = 1e-3;
  testing::expect_error<InvalidArgument>([&] { privacy::train_dp_classifier(*toy_model(), toy_dataset(32), o, dp); },
                                         "steps per epoch × epochs", "does not fit in 64 bits");
  // A huge batch is one batch: no n + b − 1 that wraps.
  o = small_options();
  o.batch_size = kHuge;
  EXPECT_EQ(nn::total_train_steps(1000, o), 1);
  EXPECT_EQ(ceil_div(5, kHuge), 1);
  EXPECT_EQ(ceil_div(kHuge, 2), kHuge / 2 + 1);
  EXPECT_EQ(ceil_div(0, 3), 0);
}

TEST(OptionChecks, SuiteWithAHugeBatchRunsAsOneBatch) {
  const nn::Dataset data = toy_dataset(12);
  attacks::SuiteOptions so;
  so.eps = 0.05f;
  so.steps = 2;
  so.batch_size = kHuge;
  so.attacks = {attacks::AttackMethod::Fgsm};
  so.sanity_checks = false;
  auto model = toy_model();
  const attacks::SuiteResult r = attacks::run_suite(*model, data, Device::cpu(), so);
  EXPECT_GE(r.robust_accuracy, 0.0);
  EXPECT_LE(r.robust_accuracy, 1.0);
}

TEST(OptionChecks, ShapesWhoseElementCountOverflowsAreErrors) {
  EXPECT_THROW(shape_numel({kHuge, 2, 0}), ShapeError);
  EXPECT_THROW(shape_numel({std::int64_t{1} << 32, std::int64_t{1} << 32}), ShapeError);
  EXPECT_THROW(shape_numel({-1, 4}), ShapeError);
  EXPECT_EQ(shape_numel({0, 5}), 0);
  EXPECT_EQ(shape_numel({3, 1, 5}), 15);
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_THROW(Tensor::empty({std::int64_t{1} << 62, 4}), ShapeError);  // 2^64 bytes of float32
}

}  // namespace
}  // namespace aegis
