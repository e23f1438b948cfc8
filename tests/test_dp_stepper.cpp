// DP-SGD one step at a time (privacy/dp_stepper.h): fed the batches train_dp_classifier draws, it
// reproduces that loop's parameters exactly; its ledger is the accountant's; an empty batch is a
// noise-only step; bad options are refused.
#include <cstring>

#include "nn/zoo.h"
#include "privacy/dp_stepper.h"
#include "privacy/dp_train.h"
#include "privacy/sampling.h"
#include "core/error.h"
#include "support/testing.h"

namespace aegis {
namespace {

using testing::toy_dataset;

// Rows `idx` of the dataset as a batch.
std::pair<Tensor, Tensor> gather(const nn::Dataset& d, const std::vector<std::int64_t>& idx) {
  const auto b = static_cast<std::int64_t>(idx.size());
  Tensor x = Tensor::empty({b, 1, 4, 4});
  Tensor y = Tensor::empty({b}, DType::I32);
  for (std::int64_t i = 0; i < b; ++i) {
    std::memcpy(x.data<float>() + 16 * i, d.images.data<float>() + 16 * idx[static_cast<std::size_t>(i)],
                16 * sizeof(float));
    y.data<std::int32_t>()[i] = d.labels.data<std::int32_t>()[idx[static_cast<std::size_t>(i)]];
  }
  return {x, y};
}

TEST(DpStepper, ReproducesTheTrainingLoopOnItsBatches) {
  const nn::Dataset data = toy_dataset(256, 4);
  const double q = 32.0 / 256.0;
  nn::TrainOptions o;
  o.epochs = 2;
  o.batch_size = 32;
  o.lr = 0.5f;
  o.seed = 9;
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.2;
  dp.noise.max_grad_norm = 0.7;
  auto loop_model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 5});
  const privacy::DpTrainResult r = privacy::train_dp_classifier(*loop_model, data, o, dp);

  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 5});
  privacy::DpStepperOptions so;
  so.noise_multiplier = 1.2;
  so.max_grad_norm = 0.7;
  so.sampling_rate = q;
  so.dataset_size = 256;
  so.lr = 0.5f;
  so.seed = 9;
  privacy::DpStepper stepper(*model, so);
  const privacy::PoissonSampler sampler(256, q, 9);
  for (std::int64_t t = 0; t < r.steps; ++t) {
    const auto [x, y] = gather(data, sampler.sample(static_cast<std::uint64_t>(t)));
    const privacy::DpStepResult s = stepper.step(x, y);
    EXPECT_EQ(s.step, t + 1);
    EXPECT_EQ(s.batch_size, x.shape()[0]);
  }
  const auto a = loop_model->parameters(), b = model->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i].value().to_vector<float>(), b[i].value().to_vector<float>()) << "parameter " << i;
  EXPECT_DOUBLE_EQ(stepper.ledger().epsilon, r.ledger.epsilon);
  EXPECT_EQ(stepper.ledger().steps(), r.ledger.steps());
}

TEST(DpStepper, EmptyBatchesAddNoiseAndCount) {
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 1});
  const auto before = model->parameters().front().value().to_vector<float>();
  privacy::DpStepperOptions so;
  so.sampling_rate = 0.01;
  so.dataset_size = 1000;
  so.delta = 1e-5;
  privacy::DpStepper stepper(*model, so);
  const privacy::DpStepResult s = stepper.step(Tensor::empty({0, 1, 4, 4}), Tensor::empty({0}, DType::I32));
  EXPECT_EQ(s.batch_size, 0);
  EXPECT_EQ(s.loss, 0.0);
  EXPECT_NE(model->parameters().front().value().to_vector<float>(), before);  // the noise moved it
  EXPECT_DOUBLE_EQ(stepper.ledger().epsilon, privacy::rdp_epsilon({{1.0, 0.01, 1}}, 1e-5).epsilon);
}

TEST(DpStepper, RefusesBadOptionsAndShapes) {
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 1});
  privacy::DpStepperOptions so;
  so.dataset_size = 100;
  const auto with = [&](auto change) {
    privacy::DpStepperOptions o = so;
    change(o);
    return o;
  };
  testing::expect_error<InvalidArgument>([&] { privacy::DpStepper(*model, with([](auto& o) { o.noise_multiplier = 0; })); }, "",
                        "noise multiplier 0 must be positive");
  testing::expect_error<InvalidArgument>([&] { privacy::DpStepper(*model, with([](auto& o) { o.sampling_rate = 1.5; })); }, "",
                        "sampling rate 1.5 must lie in (0, 1]");
  testing::expect_error<InvalidArgument>([&] { privacy::DpStepper(*model, with([](auto& o) { o.max_grad_norm = -1; })); }, "",
                        "max_grad_norm (clipping norm C) -1");
  testing::expect_error<InvalidArgument>([&] { privacy::DpStepper(*model, with([](auto& o) { o.dataset_size = 0; })); }, "",
                        "dataset size 0");
  privacy::DpStepper stepper(*model, so);
  testing::expect_error<ShapeError>([&] { stepper.step(Tensor::empty({3, 1, 4, 4}), Tensor::empty({2}, DType::I32)); }, "",
                        "3 images but labels of shape");
}

}  // namespace
}  // namespace aegis
