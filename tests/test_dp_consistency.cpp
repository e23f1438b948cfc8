// DP-CERT's consistency regularizer inside DP-SGD (privacy/dp_augment.h, ConsistencyOptions): the
// grouped per-example clipping of the regularized loss against the obvious oracle (each example's K
// copies run alone through the same loss, the gradient clipped by hand), the ledger unchanged by
// the regularizer, training on digits, the option checks, and the command line.
#include <algorithm>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/model_file.h"
#include "nn/zoo.h"
#include "privacy/dp_train.h"
#include "privacy/per_example.h"
#include "runtime/autograd.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;

constexpr privacy::ConsistencyOptions kRegularizer{4.0f, 0.5f};

// Conv → GroupNorm → tanh → Linear: every kind of clipped layer.
std::shared_ptr<nn::Module> mixed_model(std::uint64_t seed) {
  nn::InitRng rng(seed);
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(2, 4, 3, rng, nn::Conv2dOptions{2, 1}), std::make_shared<nn::GroupNorm>(2, 4),
      std::make_shared<nn::ActivationLayer>(nn::ActivationKind::Tanh), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(4 * 3 * 4, 5, rng)});
}

// `examples` examples of K noisy copies each (consecutive rows), as augmented_batch lays them out.
privacy::AugmentedBatch batch_of(std::int64_t examples, std::int64_t k, std::uint64_t seed) {
  privacy::AugmentedBatch b;
  b.examples = examples;
  b.images = testing::random_tensor({examples * k, 2, 5, 7}, seed, 0.0f, 1.0f);
  std::vector<std::int32_t> y;
  for (std::int64_t r = 0; r < examples * k; ++r) y.push_back(static_cast<std::int32_t>((r / k * 3 + 1) % 5));
  b.labels = Tensor::from_vector(y, {examples * k});
  b.loss_weights = Tensor::full({examples * k}, 1.0 / static_cast<double>(k));
  b.example_mask = Tensor::full({examples}, 1.0);
  return b;
}

privacy::AugmentedBatch example_rows(const privacy::AugmentedBatch& b, std::int64_t i, std::int64_t k) {
  privacy::AugmentedBatch one;
  one.examples = 1;
  one.images = b.images.rows(i * k, (i + 1) * k);
  one.labels = b.labels.rows(i * k, (i + 1) * k);
  one.loss_weights = b.loss_weights.rows(i * k, (i + 1) * k);
  one.example_mask = b.example_mask.rows(i, i + 1);
  return one;
}

using testing::flat_grads;

using testing::norm_of;

void backward_loss(nn::Module& model, const privacy::AugmentedBatch& b, std::int64_t k,
                   const std::optional<privacy::ConsistencyOptions>& c) {
  const Var logits = model.forward(Var(b.images));
  autograd::backward(privacy::augmented_batch_loss(logits, b, k, c));
}

void expect_grouped_clipping_matches_loop(std::int64_t k, std::uint64_t seed) {
  auto model = mixed_model(seed);
  const std::int64_t examples = 5;
  const privacy::AugmentedBatch b = batch_of(examples, k, seed + 1);
  // The oracle: each example alone, capture off.
  privacy::enable_per_example_capture(*model, false);
  std::vector<std::vector<double>> grads;
  std::vector<double> norms;
  for (std::int64_t i = 0; i < examples; ++i) {
    model->zero_grad();
    backward_loss(*model, example_rows(b, i, k), k, kRegularizer);
    grads.push_back(flat_grads(*model));
    norms.push_back(norm_of(grads.back()));
  }
  // The regularizer does move the gradient: without it, example 0's gradient differs.
  model->zero_grad();
  backward_loss(*model, example_rows(b, 0, k), k, std::nullopt);
  const std::vector<double> plain = flat_grads(*model);
  double moved = 0.0;
  for (std::size_t j = 0; j < plain.size(); ++j) moved = std::max(moved, std::fabs(plain[j] - grads[0][j]));
  EXPECT_GT(moved, 1e-3 * norms[0]);

  std::vector<double> sorted = norms;
  std::sort(sorted.begin(), sorted.end());
  privacy::ClipOptions opt;
  opt.max_grad_norm = static_cast<float>(0.5 * (sorted[1] + sorted[2]));  // some clipped, some not
  opt.group_size = k;
  model->zero_grad();
  privacy::enable_per_example_capture(*model, true);
  backward_loss(*model, b, k, kRegularizer);
  const privacy::ClipStats st = privacy::clip_and_accumulate(*model, opt);
  privacy::enable_per_example_capture(*model, false);
  // Norms of the same sums formed in another order: float32 rounding, ≲ 1e-5 relative.
  EXPECT_TRUE(testing::all_close(st.per_example_norms, norms, 2e-4, 1e-6));
  std::vector<double> expected(grads[0].size(), 0.0);
  std::int64_t clipped = 0;
  for (std::size_t i = 0; i < grads.size(); ++i) {
    const double c = std::min(1.0, opt.max_grad_norm / (norms[i] + 1e-6));
    clipped += norms[i] > opt.max_grad_norm;
    for (std::size_t j = 0; j < expected.size(); ++j) expected[j] += c * grads[i][j];
  }
  EXPECT_GT(clipped, 0);
  EXPECT_LT(clipped, examples);
  EXPECT_EQ(st.clipped, clipped);
  // Sums of mixed signs: tolerance relative to the largest entry (float32 over ≤ 10³ terms).
  double scale = 0.0;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  EXPECT_TRUE(testing::all_close(flat_grads(*model), expected, 1e-4, 1e-4 * scale + 1e-12));
}

TEST(DpConsistency, GroupedClippingOfTheRegularizedLossMatchesEachExampleAlone) {
  for (std::int64_t k : {2, 4}) {
    SCOPED_TRACE("K = " + std::to_string(k));
    expect_grouped_clipping_matches_loop(k, 100 + static_cast<std::uint64_t>(k));
  }
}

nn::TrainOptions small_options(std::int64_t epochs) {
  nn::TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 32;
  o.lr = 0.5f;
  o.optimizer = nn::OptimizerKind::Sgd;
  o.schedule = nn::ScheduleKind::Constant;
  o.seed = 3;
  o.noise_sigma = 0.25f;
  return o;
}

privacy::DpTrainOptions dp_options(std::int64_t k) {
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 0.8;
  dp.noise.max_grad_norm = 1.0;
  dp.augmult = k;
  return dp;
}

TEST(DpConsistency, LedgerIsTheSameWithAndWithoutTheRegularizer) {
  const nn::Dataset data = testing::toy_dataset(256, 1);
  auto plain_model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  auto reg_model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  const privacy::DpTrainOptions plain = dp_options(4);
  privacy::DpTrainOptions regularized = plain;
  regularized.consistency = kRegularizer;
  const auto a = privacy::train_dp_classifier(*plain_model, data, small_options(2), plain);
  const auto b = privacy::train_dp_classifier(*reg_model, data, small_options(2), regularized);
  EXPECT_EQ(a.ledger.to_metadata(), b.ledger.to_metadata());
  EXPECT_EQ(a.ledger.epsilon, b.ledger.epsilon);
  EXPECT_EQ(a.steps, b.steps);
  // The regularizer changed training.
  const auto pa = plain_model->parameters(), pb = reg_model->parameters();
  bool differs = false;
  for (std::size_t i = 0; i < pa.size(); ++i)
    differs = differs || pa[i].value().to_vector<float>() != pb[i].value().to_vector<float>();
  EXPECT_TRUE(differs);
}

TEST(DpConsistency, TrainsOnDigits) {
  const nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  auto model = nn::build_model({"mlp", {1, 8, 8}, 10, "", 3});
  nn::TrainOptions o = small_options(3);
  o.batch_size = 150;
  o.lr = 2.0f;
  privacy::DpTrainOptions dp = dp_options(2);
  dp.noise.noise_multiplier = 1.0;
  dp.delta = 1e-4;
  dp.consistency = privacy::ConsistencyOptions{1.0f, 0.5f};
  const auto r = privacy::train_dp_classifier(*model, split.train, o, dp);
  ASSERT_EQ(r.epochs.size(), 3u);
  EXPECT_LT(r.epochs.back().train_loss, 0.8 * r.epochs.front().train_loss);
  // Ten classes: chance is 0.1.
  EXPECT_GT(nn::evaluate(*model, split.test, Device::cpu()).accuracy, 0.5);
}

TEST(DpConsistency, OptionsOutOfRangeAreRefused) {
  const nn::TrainOptions o = small_options(1);
  privacy::DpTrainOptions dp = dp_options(2);
  dp.consistency = kRegularizer;
  EXPECT_NO_THROW(privacy::plan_dp(100, o, dp));
  for (float bad : {-1.0f, NAN, INFINITY}) {
    privacy::DpTrainOptions d = dp;
    d.consistency->lambda = bad;
    EXPECT_THROW(privacy::plan_dp(100, o, d), InvalidArgument) << bad;
    d = dp;
    d.consistency->eta = bad;
    EXPECT_THROW(privacy::plan_dp(100, o, d), InvalidArgument) << bad;
  }
  privacy::DpTrainOptions one_copy = dp;
  one_copy.augmult = 1;
  testing::expect_error<InvalidArgument>([&] { privacy::plan_dp(100, o, one_copy); }, "consistency", "K >= 2");
  nn::TrainOptions clean = o;
  clean.noise_sigma = 0.0f;
  testing::expect_error<InvalidArgument>([&] { privacy::plan_dp(100, clean, dp); }, "consistency", "noise sigma > 0");
}

TEST(DpConsistency, CommandLineRecordsTheWeightsAndRefusesBadCombinations) {
  const std::string dir = testing::make_temp_dir("aegis_dp_consistency");
  const std::string out = dir + "/m.safetensors";
  const std::string base =
      "train --data digits --model mlp --epochs 1 --batch-size 150 --optimizer sgd --lr 2 --device cpu --quiet "
      "--out " +
      out + " ";
  const testing::CliRun t = testing::run_cli(base +
                                             "--dp --noise-multiplier 1.0 --delta 1e-4 --noise-sigma 0.25 --augmult 2 "
                                             "--consistency 2 --consistency-entropy 0.25 --json");
  ASSERT_EQ(t.status, 0) << t.err;
  const auto j = nlohmann::json::parse(t.out);
  EXPECT_EQ(j["consistency_lambda"].get<double>(), 2.0);
  EXPECT_EQ(j["consistency_eta"].get<double>(), 0.25);
  const nn::LoadedClassifier loaded = nn::load_classifier(out);
  EXPECT_EQ(loaded.metadata.at("aegis.consistency.lambda"), "2.0");
  EXPECT_EQ(loaded.metadata.at("aegis.consistency.eta"), "0.25");
  EXPECT_TRUE(loaded.metadata.count("aegis.dp.epsilon"));

  const struct {
    std::string args, message;
  } refusals[] = {
      {"--noise-sigma 0.25 --consistency 1", "add --dp"},
      {"--dp --noise-multiplier 1 --noise-sigma 0.25 --consistency 1", "--augmult K >= 2"},
      {"--dp --noise-multiplier 1 --augmult 2 --consistency 1", "--noise-sigma > 0"},
      {"--dp --noise-multiplier 1 --noise-sigma 0.25 --augmult 2 --consistency -1", "--consistency"},
      {"--dp --noise-multiplier 1 --noise-sigma 0.25 --augmult 2 --consistency nan", "--consistency"},
      {"--dp --noise-multiplier 1 --noise-sigma 0.25 --augmult 2 --consistency-entropy 1", "--consistency"},
  };
  for (const auto& r : refusals) {
    SCOPED_TRACE(r.args);
    const testing::CliRun e = testing::run_cli(base + r.args);
    EXPECT_EQ(e.status, 1);
    EXPECT_EQ(e.err.rfind("aegis: error: ", 0), 0u) << e.err;
    EXPECT_NE(e.err.find(r.message), std::string::npos) << e.err;
    EXPECT_EQ(std::count(e.err.begin(), e.err.end(), '\n'), 1) << e.err;
  }
}

}  // namespace
}  // namespace aegis
