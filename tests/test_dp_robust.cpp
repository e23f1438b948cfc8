// DP-SGD with transformed examples (privacy/dp_augment.h): augmentation multiplicity, Gaussian
// noise for randomized smoothing (DP-CERT), adversarial examples. The ledger must not move, the
// K = 1 path must be the plain one, and the model file must carry both the ledger and σ.
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "attacks/adv_train.h"
#include "certify/certify_run.h"
#include "nn/model_file.h"
#include "nn/zoo.h"
#include "privacy/dp_train.h"
#include "support/testing.h"

namespace aegis {
namespace {

using testing::toy_dataset;

nn::TrainOptions small_options(std::int64_t epochs = 2) {
  nn::TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 32;
  o.lr = 0.5f;
  o.optimizer = nn::OptimizerKind::Sgd;
  o.schedule = nn::ScheduleKind::Constant;
  o.seed = 3;
  return o;
}

privacy::DpTrainOptions dp_options() {
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 0.8;
  dp.noise.max_grad_norm = 1.0;
  return dp;
}

struct TrainedRun {
  std::shared_ptr<nn::Module> model;
  std::vector<float> weights;
  privacy::DpTrainResult result;
};

TrainedRun train(const nn::TrainOptions& o, const privacy::DpTrainOptions& dp, std::int64_t n = 256) {
  const nn::Dataset data = toy_dataset(n, 1);
  auto model = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  TrainedRun r;
  r.model = model;
  r.result = privacy::train_dp_classifier(*model, data, o, dp);
  for (const autograd::Var& p : model->parameters()) {
    const std::vector<float> v = p.value().to_vector<float>();
    r.weights.insert(r.weights.end(), v.begin(), v.end());
  }
  return r;
}

void expect_same_ledger(const privacy::PrivacyLedger& a, const privacy::PrivacyLedger& b) {
  EXPECT_EQ(a.to_metadata(), b.to_metadata());
  EXPECT_EQ(a.epsilon, b.epsilon);
}

TEST(DpRobust, TheTransformedPathWithOneCopyAndNoTransformIsThePlainOneBitForBit) {
  const TrainedRun plain = train(small_options(), dp_options());
  privacy::DpTrainOptions identity = dp_options();
  // An input hook that changes nothing routes every step through the augmented path (K = 1).
  identity.make_input = [](nn::Module&, const Tensor& x, const Tensor&, std::uint64_t, std::int64_t) { return x; };
  const TrainedRun hooked = train(small_options(), identity);
  ASSERT_EQ(plain.weights.size(), hooked.weights.size());
  for (std::size_t i = 0; i < plain.weights.size(); ++i) ASSERT_EQ(plain.weights[i], hooked.weights[i]) << i;
  expect_same_ledger(plain.result.ledger, hooked.result.ledger);
}

TEST(DpRobust, IdenticalCopiesGiveTheOneCopyUpdate) {
  // Without noise or hook the K copies are identical, and their average is the one copy's
  // gradient: the updates agree up to float32 rounding of the K-term sums (one step of the whole
  // set, q = 1, so that rounding cannot grow through later steps).
  nn::TrainOptions o = small_options(1);
  privacy::DpTrainOptions one = dp_options();
  one.sampling_rate = 1.0;
  privacy::DpTrainOptions four = one;
  four.augmult = 4;
  auto model_a = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  auto model_b = nn::build_model({"mlp", {1, 4, 4}, 2, "", 2});
  const nn::Dataset data = toy_dataset(256, 1);
  const auto a = privacy::train_dp_classifier(*model_a, data, o, one);
  const auto b = privacy::train_dp_classifier(*model_b, data, o, four);
  const auto pa = model_a->parameters(), pb = model_b->parameters();
  for (std::size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(testing::all_close(pb[k].value(), pa[k].value(), 1e-4, 1e-5)) << "parameter " << k;
  expect_same_ledger(a.ledger, b.ledger);
  EXPECT_EQ(a.epochs.back().train_accuracy, b.epochs.back().train_accuracy);  // K copies: same predictions
}

TEST(DpRobust, LedgerIsUnchangedByCopiesNoiseAndAdversarialExamples) {
  const nn::TrainOptions o = small_options();
  const TrainedRun plain = train(o, dp_options());
  privacy::DpTrainOptions copies = dp_options();
  copies.augmult = 4;
  nn::TrainOptions noisy = o;
  noisy.noise_sigma = 0.25f;
  const TrainedRun smoothed = train(noisy, copies);
  attacks::AdvTrainOptions adv;
  adv.method = attacks::AdvMethod::FgsmRs;
  adv.eps = 0.1f;
  privacy::DpTrainOptions adversarial = dp_options();
  adversarial.make_input = attacks::dp_adversarial_inputs(adv, o.seed);
  const TrainedRun robust = train(o, adversarial);
  expect_same_ledger(plain.result.ledger, smoothed.result.ledger);
  expect_same_ledger(plain.result.ledger, robust.result.ledger);
  // The transformations did change training.
  EXPECT_NE(plain.weights, smoothed.weights);
  EXPECT_NE(plain.weights, robust.weights);
}

TEST(DpRobust, AdversarialTrainingUnderDpLowersTheLoss) {
  for (attacks::AdvMethod m : {attacks::AdvMethod::Pgd, attacks::AdvMethod::FgsmRs}) {
    SCOPED_TRACE(attacks::adv_method_name(m));
    attacks::AdvTrainOptions adv;
    adv.method = m;
    adv.eps = 0.05f;
    adv.steps = 3;
    privacy::DpTrainOptions dp = dp_options();
    dp.noise.noise_multiplier = 0.5;
    dp.make_input = attacks::dp_adversarial_inputs(adv, 3);
    dp.augmult = 2;
    const TrainedRun r = train(small_options(8), dp, 512);
    ASSERT_EQ(r.result.epochs.size(), 8u);
    EXPECT_LT(r.result.epochs.back().train_loss, r.result.epochs.front().train_loss);
    // The toy task is linear with a margin mostly above ε: the model ends far above chance.
    EXPECT_GT(nn::evaluate(*r.model, toy_dataset(512, 9), Device::cpu()).accuracy, 0.7);
  }
  attacks::AdvTrainOptions free_at;
  free_at.method = attacks::AdvMethod::Free;
  free_at.eps = 0.1f;
  EXPECT_THROW(attacks::dp_adversarial_inputs(free_at, 1), InvalidArgument);
}

TEST(DpRobust, BadMultiplicityIsRefused) {
  privacy::DpTrainOptions dp = dp_options();
  dp.augmult = 0;
  EXPECT_THROW(privacy::plan_dp(100, small_options(), dp), InvalidArgument);
  dp.augmult = 1025;
  EXPECT_THROW(privacy::plan_dp(100, small_options(), dp), InvalidArgument);
}

TEST(DpRobust, CliTrainsPrivateSmoothedModelThatCertifyReadsSigmaFrom) {
  const std::string dir = testing::make_temp_dir("aegis_dp_robust");
  const std::string model = dir + "/dp_smooth.safetensors";
  const testing::CliRun t = testing::run_cli(
      "train --data digits --model mlp --dp --noise-multiplier 1.0 --delta 1e-4 --batch-size 150 --epochs 3 "
      "--optimizer sgd --lr 2 --schedule constant --noise-sigma 0.25 --augmult 2 --device cpu --json --quiet --out " +
      model);
  ASSERT_EQ(t.status, 0) << t.err;
  const auto j = nlohmann::json::parse(t.out);
  EXPECT_EQ(j["augmult"], 2);
  EXPECT_GT(j["epsilon"].get<double>(), 0.0);
  const nn::LoadedClassifier loaded = nn::load_classifier(model);
  EXPECT_TRUE(loaded.metadata.count("aegis.dp.epsilon"));
  EXPECT_EQ(loaded.metadata.at("aegis.augmult"), "2");
  EXPECT_DOUBLE_EQ(certify::trained_noise_sigma(loaded.metadata, model), 0.25);
  // No --sigma: certify takes the model's σ.
  const testing::CliRun c = testing::run_cli("certify --model " + model +
                                             " --data digits --n0 10 --n 50 --max 3 "
                                             "--device cpu --json --quiet --out " +
                                             dir + "/cert.tsv");
  ASSERT_EQ(c.status, 0) << c.err;
  const auto k = nlohmann::json::parse(c.out);
  ASSERT_FALSE(k["sweeps"].empty()) << c.out;
  EXPECT_DOUBLE_EQ(k["sweeps"][0]["sigma"].get<double>(), 0.25);
  // A model trained without noise names what is missing.
  const std::string plain = dir + "/plain.safetensors";
  ASSERT_EQ(testing::run_cli("train --data digits --model mlp --epochs 1 --device cpu --quiet --out " + plain).status,
            0);
  const testing::CliRun e = testing::run_cli("certify --model " + plain +
                                             " --data digits --n0 10 --n 50 --max 3 "
                                             "--device cpu --quiet --out " +
                                             dir + "/cert2.tsv");
  EXPECT_EQ(e.status, 1);
  EXPECT_NE(e.err.find("records no training noise"), std::string::npos) << e.err;
}

}  // namespace
}  // namespace aegis
