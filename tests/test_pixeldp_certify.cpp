// PixelDP (certify/pixeldp.h), the certification side: the sensitivity projection during
// training, Hoeffding / empirical-Bernstein bounds (hand values and coverage), the robustness
// condition and size, model files, batching independence, the expected-scores gradient, and
// `aegis pixeldp train | certify` on the bundled digits set.
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "certify/pixeldp.h"
#include "nn/data/dataset.h"
#include "nn/layers.h"
#include "nn/model_file.h"
#include "runtime/ops.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::BoundKind;
using certify::PixelDpNorm;
using nn::Var;

const nn::DatasetSplit& digits() {
  static const nn::DatasetSplit split = nn::load_digits(testing::source_dir() + "/data");
  return split;
}

nn::ModelSpec digits_spec(const std::string& model, const std::string& activation = "") {
  return nn::ModelSpec{model, {1, 8, 8}, 10, activation, 3};
}

// ---- the sensitivity projection ----------------------------------------------------------------

// Weights blown up 10× start far outside the constraint; after training every pre-noise linear
// layer must be back at operator norm ≤ 1 (and pushed against it by the inflated start).
TEST(PixelDpTraining, ProjectionKeepsSensitivityAtMostOne) {
  for (const PixelDpNorm norm : {PixelDpNorm::L2, PixelDpNorm::L1}) {
    certify::PixelDpParams params;
    params.norm = norm;
    params.L = 0.1;
    auto net = certify::build_pixeldp(digits_spec("lenet-2conv"), 2, params, 1);
    for (Var& p : net->parameters()) ops::scale_inplace(p.mutable_value(), 10.0f);
    EXPECT_GT(net->sensitivity(), 10.0);
    certify::PixelDpTrainOptions opt;
    opt.train.epochs = 1;
    opt.train.batch_size = 100;
    opt.train.lr = 0.01f;
    opt.train.optimizer = nn::OptimizerKind::Adam;
    certify::train_pixeldp(*net, nn::take(digits().train, 0, 500), opt);
    const double delta = net->sensitivity();
    // Power iteration converges to relative change 1e-9; float convs add ~1e-6 relative error.
    EXPECT_LE(delta, 1.0 + 1e-4) << certify::pixeldp_norm_name(norm);
    EXPECT_GE(delta, 0.5) << certify::pixeldp_norm_name(norm);  // projected, not collapsed
    // Each conv in front of the noise separately (the product alone could hide one above 1).
    for (const char* name : {"0", "3"}) {
      const auto& layers = net->children();
      for (const auto& [child_name, child] : layers) {
        if (child_name != name) continue;
        const auto& conv = dynamic_cast<const nn::Conv2d&>(*child);
        const double n = norm == PixelDpNorm::L1
                             ? certify::conv2d_l1_norm(conv.weight().value(), conv.options())
                             : certify::conv2d_spectral_norm(conv.weight().value(), conv.options(),
                                                             name[0] == '0' ? Shape{1, 8, 8} : Shape{32, 4, 4});
        EXPECT_LE(n, 1.0 + 1e-4) << name;
      }
    }
  }
}

// ---- bounds ---------------------------------------------------------------------------------------

TEST(PixelDpBounds, HandValues) {
  // sqrt(ln(2·10/0.05)/(2·300)); sqrt(2·0.04·ln(4·10/0.05)/300) + 7·ln(800)/(3·299).
  EXPECT_NEAR(certify::hoeffding_half_width(300, 10, 0.95), 0.0999288459113782, 1e-14);
  EXPECT_NEAR(certify::bernstein_half_width(300, 10, 0.95, 0.04), 0.0943857201764766, 1e-14);
  // Empirical Bernstein adapts to small variance; Hoeffding does not.
  EXPECT_LT(certify::bernstein_half_width(10000, 10, 0.95, 0.001), certify::hoeffding_half_width(10000, 10, 0.95) / 2);
  // estimate_scores from sums: 3 classes, n = 100, clipped to [0, 1].
  const auto e = certify::estimate_scores({95, 5, 0}, {95, 5, 0}, 100, 0.9, BoundKind::Hoeffding);
  const double t = std::sqrt(std::log(2 * 3 / 0.1) / 200);
  EXPECT_EQ(e.prediction, 0);
  EXPECT_NEAR(e.lower[0], 0.95 - t, 1e-12);
  EXPECT_NEAR(e.upper[0], 1.0, 0);
  EXPECT_NEAR(e.upper[1], 0.05 + t, 1e-12);
  EXPECT_NEAR(e.lower[2], 0.0, 0);
  // Bernstein with the unbiased sample variance of 95 ones and 5 zeros: 0.95·0.05·100/99.
  const auto b = certify::estimate_scores({95, 5, 0}, {95, 5, 0}, 100, 0.9, BoundKind::Bernstein);
  EXPECT_NEAR(b.lower[0], 0.95 - certify::bernstein_half_width(100, 3, 0.9, 0.95 * 0.05 * 100 / 99), 1e-12);
  testing::expect_error<InvalidArgument>(
      [] {
        certify::estimate_scores({150, 0}, {150, 0}, 100, 0.9, BoundKind::Hoeffding);
      },
      "150", "outside [0, n");
}

// Repeated experiments with known means: all K intervals must hold together in at least a
// fraction η of them (up to 3 binomial standard errors of the observed failure rate).
TEST(PixelDpBounds, Coverage) {
  const std::vector<double> p{0.5, 0.3, 0.2};
  const int trials = 3000;
  const std::int64_t n = 40;
  const double eta = 0.9, slack = 3 * std::sqrt(eta * (1 - eta) / trials);
  for (const BoundKind bound : {BoundKind::Hoeffding, BoundKind::Bernstein}) {
    int failures = 0;
    for (int trial = 0; trial < trials; ++trial) {
      const philox::Key key{77, philox::kPurposeGeneric, static_cast<std::uint32_t>(trial)};
      std::vector<double> sum(3, 0.0), sq(3, 0.0);
      for (std::int64_t s = 0; s < n; ++s) {
        // A categorical draw as one-hot scores.
        const double u = philox::uniform(key, static_cast<std::uint64_t>(s));
        const std::size_t c = u < p[0] ? 0 : u < p[0] + p[1] ? 1 : 2;
        sum[c] += 1.0;
        sq[c] += 1.0;
      }
      const auto e = certify::estimate_scores(sum, sq, n, eta, bound);
      bool ok = true;
      for (std::size_t c = 0; c < 3; ++c) ok = ok && e.lower[c] <= p[c] && p[c] <= e.upper[c];
      failures += !ok;
    }
    EXPECT_LE(failures / static_cast<double>(trials), 1 - eta + slack) << certify::bound_kind_name(bound);
    // Continuous scores X = u² and 1 − X (means 1/3 and 2/3), as softmax scores would be.
    failures = 0;
    for (int trial = 0; trial < trials; ++trial) {
      const philox::Key key{78, philox::kPurposeGeneric, static_cast<std::uint32_t>(trial)};
      std::vector<double> sum(2, 0.0), sq(2, 0.0);
      for (std::int64_t s = 0; s < n; ++s) {
        const double u = philox::uniform(key, static_cast<std::uint64_t>(s)), x = u * u;
        sum[0] += x, sq[0] += x * x, sum[1] += 1 - x, sq[1] += (1 - x) * (1 - x);
      }
      const auto e = certify::estimate_scores(sum, sq, n, eta, bound);
      failures += !(e.lower[0] <= 1.0 / 3 && 1.0 / 3 <= e.upper[0] && e.lower[1] <= 2.0 / 3 && 2.0 / 3 <= e.upper[1]);
    }
    EXPECT_LE(failures / static_cast<double>(trials), 1 - eta + slack) << certify::bound_kind_name(bound);
  }
}

// ---- robustness condition and size ---------------------------------------------------------------

TEST(PixelDpRobustness, ConditionAndMaxEpsilon) {
  // lower 0.8, upper 0.1, δ 0.05: 0.1·u² + 0.05·u − 0.75 = 0 at u = 2.5.
  const double root = std::log(2.5);
  EXPECT_NEAR(certify::max_robust_epsilon(0.8, 0.1, 0.05, 10.0), root, 1e-12);
  EXPECT_TRUE(certify::robustness_condition(0.8, 0.1, root - 1e-9, 0.05));
  EXPECT_FALSE(certify::robustness_condition(0.8, 0.1, root + 1e-9, 0.05));
  EXPECT_EQ(certify::max_robust_epsilon(0.8, 0.1, 0.05, 0.5), 0.5);                       // capped (Gaussian: ε ≤ 1)
  EXPECT_NEAR(certify::max_robust_epsilon(0.8, 0.2, 0.0, 10.0), std::log(2.0), 1e-12);    // e^{2ε} < 4
  EXPECT_NEAR(certify::max_robust_epsilon(0.8, 0.0, 0.05, 10.0), std::log(15.0), 1e-12);  // (1 + u)·δ < 0.8
  EXPECT_EQ(certify::max_robust_epsilon(0.5, 0.41, 0.05, 10.0), 0.0);                     // lower ≤ upper + 2δ: none
  EXPECT_EQ(certify::max_robust_epsilon(0.5, 0.5, 0.0, 10.0), 0.0);
}

TEST(PixelDpRobustness, SizeGrowsWithTheScoreGap) {
  const certify::PixelDpMechanism g{PixelDpNorm::L2, 0.5, 0.05, 2.0};
  const certify::PixelDpMechanism l{PixelDpNorm::L1, 0.5, 0.0, 2.0};
  double previous_g = 0, previous_l = 0;
  for (int i = 0; i <= 25; ++i) {
    const double gap = i / 50.0;
    certify::ScoreEstimate e;
    e.mean = {0.5 + gap, 0.5 - gap};
    e.lower = {0.5 + gap, 0.5 - gap};
    e.upper = e.lower;
    e.prediction = 0;
    const double size_g = certify::robustness_size(e, g), size_l = certify::robustness_size(e, l);
    EXPECT_GE(size_g, previous_g) << gap;
    EXPECT_GE(size_l, previous_l) << gap;
    // Laplace: ε* = ½·ln(lower/upper), size = ε*·b/Δ.
    if (gap > 0 && gap < 0.5) {
      EXPECT_NEAR(size_l, 0.5 * std::log((0.5 + gap) / (0.5 - gap)) * 0.5 / 2.0, 1e-12);
    }
    // Gaussian: never past the ε ≤ 1 cap, σ/(sqrt(2 ln(1.25/δ))·Δ).
    EXPECT_LE(size_g, g.size_at(1.0) + 1e-15);
    previous_g = size_g, previous_l = size_l;
  }
  EXPECT_NEAR(previous_g, g.size_at(1.0), 1e-12);  // gap 0.5 (lower 1, upper 0) reaches the cap
}

// ---- model files, batching, the expected-scores model ------------------------------------------------

TEST(PixelDpFiles, RoundTripAndErrors) {
  const std::string dir = testing::make_temp_dir("pixeldp_files");
  certify::PixelDpParams params;
  params.L = 0.3;
  const nn::ModelSpec spec = digits_spec("mlp");
  auto net = certify::build_pixeldp(spec, 1, params, 9);
  net->constrain(500);
  const std::string path = dir + "/m.safetensors";
  certify::save_pixeldp(path, *net, spec, params);
  const certify::LoadedPixelDp loaded = certify::load_pixeldp(path);
  EXPECT_EQ(loaded.net->position(), 1);
  EXPECT_EQ(loaded.params.L, 0.3);
  EXPECT_EQ(loaded.mechanism.scale, net->noise_layer().scale());
  EXPECT_EQ(loaded.net->noise_layer().seed(), 9u);
  EXPECT_NEAR(loaded.mechanism.sensitivity, net->sensitivity(), 1e-6);
  EXPECT_NEAR(loaded.stored_sensitivity, net->sensitivity(), 1e-6);
  // The same file is a plain classifier with the zoo's parameter names.
  const nn::LoadedClassifier plain = nn::load_classifier(path);
  EXPECT_EQ(plain.model->named_parameters().size(), loaded.net->named_parameters().size());
  EXPECT_EQ(plain.model->named_parameters()[0].first, "1.weight");
  // A classifier without PixelDP metadata, and malformed PixelDP metadata.
  const std::string bare = dir + "/bare.safetensors";
  nn::save_classifier(bare, *plain.model, spec);
  testing::expect_error<IoError>([&] { certify::load_pixeldp(bare); }, bare, "aegis.pixeldp.position");
  std::map<std::string, std::string> meta = loaded.metadata;
  meta["aegis.pixeldp.position"] = "3";
  nn::save_classifier(bare, *plain.model, spec, meta);
  testing::expect_error<IoError>([&] { certify::load_pixeldp(bare); }, bare, "not 0, 1 or 2");
  meta = loaded.metadata;
  meta["aegis.pixeldp.sigma"] = "-1";
  nn::save_classifier(bare, *plain.model, spec, meta);
  testing::expect_error<IoError>([&] { certify::load_pixeldp(bare); }, bare, "noise scale -1");
  for (const char* seed : {"-1", "12x", "18446744073709551616"}) {
    meta = loaded.metadata;
    meta["aegis.pixeldp.seed"] = seed;
    nn::save_classifier(bare, *plain.model, spec, meta);
    testing::expect_error<IoError>([&] { certify::load_pixeldp(bare); }, bare, "not a 64-bit unsigned integer");
  }
}

TEST(PixelDpCertify, IndependentOfBatchingAndDeterministic) {
  certify::PixelDpParams params;
  auto net = certify::build_pixeldp(digits_spec("mlp"), 0, params, 4);
  const Tensor x = digits().test.images.rows(0, 5).clone();
  const auto a = certify::sample_scores(*net, x, 10, 33, 0, 7, Device::cpu());
  const auto b = certify::sample_scores(*net, x, 10, 33, 0, 1000, Device::cpu());
  // Inputs 2..4 alone, keyed from id 12, draw what they drew as rows 2..4 of the batch.
  const auto c = certify::sample_scores(*net, x.rows(2, 5), 12, 33, 0, 50, Device::cpu());
  ASSERT_EQ(a.sum.size(), 50u);
  // Float GEMMs over different row counts may round differently: 1e-5 on sums of 33 scores.
  EXPECT_TRUE(testing::all_close(a.sum, b.sum, 0, 1e-5));
  EXPECT_TRUE(testing::all_close(c.sum, std::vector<double>(a.sum.begin() + 20, a.sum.end()), 0, 1e-5));
  const auto other_phase = certify::sample_scores(*net, x, 10, 33, 1, 1000, Device::cpu());
  EXPECT_NE(a.sum, other_phase.sum);
}

TEST(PixelDpCertify, ExpectedScoresGradient) {
  certify::PixelDpParams params;
  params.L = 0.5;
  auto net = certify::build_pixeldp(digits_spec("mlp", "tanh"), 1, params, 2);
  auto model = std::make_shared<certify::ExpectedScoresModel>(net, 4, true);
  nn::FrozenScope frozen(*model);
  const Tensor x = testing::random_tensor({2, 1, 8, 8}, 8, 0.2f, 0.8f);
  EXPECT_TRUE(testing::gradcheck(
      [&](const std::vector<Var>& in) { return testing::weighted_sum(model->forward(in[0]), 5); }, {Var(x, true)}));
  // Fixed noise: two passes agree; the logits are log-probabilities.
  const auto z1 = model->forward(Var(x, false)).value().to_vector<float>();
  EXPECT_EQ(z1, model->forward(Var(x, false)).value().to_vector<float>());
  double total = 0;
  for (int c = 0; c < 10; ++c) total += std::exp(z1[static_cast<std::size_t>(c)]);
  EXPECT_NEAR(total, 1.0, 1e-5);
}

// ---- the command line ------------------------------------------------------------------------------------

nlohmann::json run_json(const std::string& args) {
  const testing::CliRun r = testing::run_cli(args + " --device cpu --json --quiet");
  EXPECT_EQ(r.status, 0) << args << "\n" << r.err;
  return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

TEST(PixelDpCli, TrainAndCertifyDigits) {
  const std::string dir = testing::make_temp_dir("pixeldp_cli");
  const auto t = run_json(
      "pixeldp train --data digits --model mlp --position 0 --L 0.1 --epochs 20 --batch-size 32 "
      "--out " +
      dir + "/m.safetensors");
  EXPECT_NEAR(t["sigma"].get<double>(), certify::gaussian_sigma(1.0, 0.05, 1.0, 0.1), 1e-12);
  EXPECT_EQ(t["sensitivity"].get<double>(), 1.0);  // position 0: the identity
  const auto c = run_json("pixeldp certify --data digits --model " + dir +
                          "/m.safetensors --draws 200 --max 120 --thresholds 0,0.02,0.05,0.1,0.2 --attack cw-l2 "
                          "--attack-max 20 --cw-steps 10 --cw-search-steps 2");
  const double conventional = c["conventional_accuracy"];
  EXPECT_GT(conventional, 0.8);  // measured 0.875 (σ = 0.25 on 8×8 digits)
  const std::vector<const char*> keys{"0", "0.02", "0.05", "0.1", "0.2"};
  double previous = 1.0;
  for (const char* key : keys) {
    const double certified = c["certified_accuracy"][key];
    EXPECT_LE(certified, previous) << key;
    EXPECT_LE(certified, conventional);
    previous = certified;
  }
  EXPECT_EQ(c["certified_accuracy"]["0"].get<double>(), conventional);  // size ≥ 0 always
  EXPECT_GT(c["certified_accuracy"]["0.05"].get<double>(), 0.3);        // measured 0.575
  // ε ≤ 1 caps every size at L = 0.1, so nothing is certified at 0.2.
  EXPECT_NEAR(c["max_robustness_size"].get<double>(), 0.1, 1e-12);
  EXPECT_EQ(c["certified_accuracy"]["0.2"].get<double>(), 0.0);
  EXPECT_LE(c["mean_robustness_size"].get<double>(), 0.1);
  const auto& a = c["attack"];
  EXPECT_EQ(a["examples"].get<int>(), 20);
  double prev_attack = a["clean_accuracy"];
  for (const char* key : keys) {
    EXPECT_LE(a["accuracy_at"][key].get<double>(), prev_attack) << key;
    prev_attack = a["accuracy_at"][key];
  }
  EXPECT_LE(a["accuracy_unbounded"].get<double>(), prev_attack);
  EXPECT_LT(a["accuracy_unbounded"].get<double>(), a["clean_accuracy"].get<double>());  // it breaks some
  // L1 (Laplace) after the first layer; CW-L2 does not apply to it.
  const auto l1 = run_json(
      "pixeldp train --data digits --model mlp --position 1 --norm l1 --L 0.1 --epochs 2 "
      "--out " +
      dir + "/l1.safetensors");
  EXPECT_EQ(l1["kind"], "laplace");
  EXPECT_LE(l1["sensitivity"].get<double>(), 1.0 + 1e-6);
  const auto cl1 = run_json("pixeldp certify --data digits --model " + dir +
                            "/l1.safetensors --draws 30 --max 20 --bound bernstein");
  EXPECT_TRUE(cl1["max_robustness_size"].is_null());
  const testing::CliRun bad_attack =
      testing::run_cli("pixeldp certify --data digits --device cpu --model " + dir + "/l1.safetensors --attack cw-l2");
  EXPECT_EQ(bad_attack.status, 1);
  EXPECT_NE(bad_attack.err.find("L1 (Laplace)"), std::string::npos) << bad_attack.err;
}

TEST(PixelDpCli, BadArguments) {
  const std::string dir = testing::make_temp_dir("pixeldp_cli_bad");
  const std::string base =
      "pixeldp train --data digits --model mlp --epochs 1 --device cpu --out " + dir + "/x.safetensors ";
  for (const auto& [args, fragment] :
       std::vector<std::pair<std::string, std::string>>{{"--position 3", "--position: 3 is not in [0, 2]"},
                                                        {"--eps 0", "--eps: 0 is not in (0, inf)"},
                                                        {"--eps 2", "at most 1"},
                                                        {"--delta 1.5", "--delta: 1.5 is not in (0, 1)"},
                                                        {"--L -1", "--L: -1 is not in (0, inf)"},
                                                        {"--norm linf", "'linf'"}}) {
    const testing::CliRun r = testing::run_cli(base + args);
    EXPECT_EQ(r.status, 1) << args;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << args << ": " << r.err;
  }
  const testing::CliRun missing =
      testing::run_cli("pixeldp certify --data digits --device cpu --model " + dir + "/none");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find(dir + "/none"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace aegis
