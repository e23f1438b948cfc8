// Membership inference (privacy/audit_mia.h): LiRA's scores against their closed form on
// synthetic φ, and the whole audit on a small pool of the bundled digits set: it attacks an
// overfit model better than chance, writes its scores, and a rerun reuses every model file and
// reproduces the numbers exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "nn/data/dataset.h"
#include "privacy/audit_mia.h"
#include "support/linear_problem.h"
#include "support/testing.h"

namespace aegis::privacy {
namespace {

TEST(AuditMia, LiraScoresMatchTheGaussianLikelihoodRatio) {
  // Example i: φ ~ N(b_i + 1, 0.2²) in a model that trained on it, N(b_i, 0.2²) otherwise, with
  // per-example offsets b_i spread far wider than the gap, so that raw φ separates poorly.
  std::mt19937 rng(5);
  std::normal_distribution<double> normal;
  const std::size_t n = 400, k_models = 16;
  std::vector<double> base(n);
  for (double& b : base) b = 5.0 * normal(rng);
  std::vector<std::vector<double>> phi(k_models, std::vector<double>(n));
  std::vector<std::vector<bool>> in(k_models, std::vector<bool>(n));
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < k_models; ++k) {
      in[k][i] = (k + i) % 2 == 0;  // each example in exactly half
      phi[k][i] = base[i] + (in[k][i] ? 1.0 : 0.0) + 0.2 * normal(rng);
    }
  std::vector<double> target(n);
  std::vector<bool> member(n);
  for (std::size_t i = 0; i < n; ++i) {
    member[i] = i % 3 == 0;
    target[i] = base[i] + (member[i] ? 1.0 : 0.0) + 0.2 * normal(rng);
  }
  const std::vector<std::vector<double>> s = lira_scores(phi, in, target);
  ASSERT_EQ(s.size(), 4u);
  // Example 0 by hand: population mean and variance of its in and out values.
  double mi = 0, mo = 0, vi = 0, vo = 0;
  for (std::size_t k = 0; k < k_models; ++k) (in[k][0] ? mi : mo) += phi[k][0] / 8.0;
  for (std::size_t k = 0; k < k_models; ++k) {
    const double d = phi[k][0] - (in[k][0] ? mi : mo);
    (in[k][0] ? vi : vo) += d * d / 8.0;
  }
  const double x = target[0];
  const double expected_online = (-0.5 * (x - mi) * (x - mi) / vi - 0.5 * std::log(vi)) -
                                 (-0.5 * (x - mo) * (x - mo) / vo - 0.5 * std::log(vo));
  EXPECT_NEAR(s[0][0], expected_online, 1e-9 * (1 + std::fabs(expected_online)));
  EXPECT_NEAR(s[2][0], (x - mo) / std::sqrt(vo), 1e-9 * (1 + std::fabs(s[2][0])));
  // The likelihood ratio separates what raw φ cannot (b_i spread 5 vs a gap of 1, noise 0.2: the
  // classes are 5σ apart per example, so every variant is near perfect).
  for (const auto& scores : s) EXPECT_GT(roc_curve(scores, member).auc, 0.99);
  EXPECT_LT(roc_curve(target, member).auc, 0.7);
  // Too few models on one side of an example.
  std::vector<std::vector<bool>> lopsided = in;
  for (std::size_t k = 1; k < k_models; ++k) lopsided[k][0] = false;
  EXPECT_THROW(lira_scores(phi, lopsided, target), InvalidArgument);
}

MiaJob small_job(const std::string& dir) {
  MiaJob j;
  j.job.model = "mlp";
  j.job.dataset = "digits";
  j.job.train.epochs = 20;
  j.job.train.batch_size = 32;
  j.job.train.lr = 0.003f;
  j.job.train.optimizer = nn::OptimizerKind::Adam;
  j.job.train.seed = 1;
  j.shadows = 4;
  j.pool = 200;
  j.seed = 9;
  j.out_dir = dir;
  return j;
}

const nn::DatasetSplit& digits() {
  static const nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  return split;
}

TEST(AuditMia, AuditsDigitsAndResumesExactly) {
  const std::string dir = testing::make_temp_dir("aegis_audit_mia");
  const MiaReport first = run_mia_audit(small_job(dir), digits());
  EXPECT_EQ(first.models_trained, 5);
  EXPECT_EQ(first.models_reused, 0);
  EXPECT_EQ(first.members, 100);
  ASSERT_EQ(first.attacks.size(), 7u);
  EXPECT_EQ(first.attacks[0].name, "loss");
  EXPECT_EQ(first.attacks[5].name, "rmia-online");
  EXPECT_EQ(first.population, 297);  // the digits test split
  // 100 training examples, 20 epochs: the target is overfit (train accuracy 1, test below), and
  // the loss attack sees it.
  EXPECT_GT(first.target_train_accuracy, first.target_test_accuracy);
  EXPECT_GT(first.attacks[0].metrics.auc, 0.55);
  EXPECT_GT(first.attacks[5].metrics.auc, 0.55) << "RMIA online";
  EXPECT_GT(first.attacks[6].metrics.auc, 0.55) << "RMIA offline";
  for (const MiaAttackResult& a : first.attacks) {
    EXPECT_GE(a.metrics.auc, 0.0);
    EXPECT_LE(a.metrics.tpr_at_0_1_fpr, a.metrics.tpr_at_1_fpr) << a.name;
    EXPECT_GE(a.metrics.balanced_accuracy, 0.5);
  }
  std::ifstream tsv(first.scores_out);
  std::string line;
  std::int64_t rows = 0;
  while (std::getline(tsv, line)) ++rows;
  EXPECT_EQ(rows, 201);

  // Losing one shadow model: the rerun trains that one and reuses the rest; the numbers repeat.
  std::filesystem::remove(std::filesystem::path(dir) / "shadow-3.safetensors");
  const MiaReport second = run_mia_audit(small_job(dir), digits());
  EXPECT_EQ(second.models_trained, 1);
  EXPECT_EQ(second.models_reused, 4);
  for (std::size_t a = 0; a < first.attacks.size(); ++a) {
    EXPECT_EQ(second.attacks[a].metrics.auc, first.attacks[a].metrics.auc) << first.attacks[a].name;
    EXPECT_EQ(second.attacks[a].metrics.tpr_at_1_fpr, first.attacks[a].metrics.tpr_at_1_fpr);
  }

  // Another audit's directory is refused rather than mixed in.
  MiaJob other = small_job(dir);
  other.seed = 10;
  EXPECT_THROW(run_mia_audit(other, digits()), InvalidArgument);
}

TEST(AuditMia, AugmentedQueriesReuseTheModelsAndMoveLiraScores) {
  // 16 shadow models on 400 examples: 8 on each side of every example, enough for the per-view
  // Gaussians. aegis trains without augmentation and a one-pixel shift of an 8x8 digit is a large
  // change, so the shifted view carries less signal than the example itself and the sum loses a
  // little here (measured: 0.02–0.04 AUC for 2 views); a view that carried nothing would cost more.
  const std::string dir = testing::make_temp_dir("aegis_audit_mia_aug");
  MiaJob j = small_job(dir);
  j.shadows = 16;
  j.pool = 400;
  j.attacks = {"lira"};
  const MiaReport one = run_mia_audit(j, digits());
  j.augment = 2;
  const MiaReport two = run_mia_audit(j, digits());
  EXPECT_EQ(two.models_trained, 0);  // the attacks do not change the models
  EXPECT_EQ(two.augment, 2);
  ASSERT_EQ(two.attacks.size(), 4u);
  for (std::size_t a = 0; a < 4; ++a) {
    EXPECT_EQ(two.attacks[a].name, one.attacks[a].name);
    EXPECT_NE(two.attacks[a].metrics.auc, one.attacks[a].metrics.auc) << two.attacks[a].name;
    EXPECT_GT(two.attacks[a].metrics.auc, one.attacks[a].metrics.auc - 0.06) << two.attacks[a].name;
  }
}

TEST(AuditMia, RejectsBadOptions) {
  const std::string dir = testing::make_temp_dir("aegis_audit_mia");
  MiaJob j = small_job(dir);
  j.shadows = 5;
  EXPECT_THROW(run_mia_audit(j, digits()), InvalidArgument);
  j = small_job(dir);
  j.shadows = 2;
  EXPECT_THROW(run_mia_audit(j, digits()), InvalidArgument);
  j = small_job(dir);
  j.pool = 1501;
  EXPECT_THROW(run_mia_audit(j, digits()), InvalidArgument);
  j = small_job("");
  EXPECT_THROW(run_mia_audit(j, digits()), InvalidArgument);
  j = small_job(dir);
  j.attacks = {"lira", "lira"};
  EXPECT_THROW(run_mia_audit(j, digits()), InvalidArgument);
  j = small_job(dir);
  j.attacks = {"shokri"};
  EXPECT_THROW(run_mia_audit(j, digits()), InvalidArgument);
  j = small_job(dir);
  j.augment = 19;
  EXPECT_THROW(run_mia_audit(j, digits()), InvalidArgument);
  j = small_job(dir);
  j.attacks = {"loss", "rmia"};
  j.augment = 2;  // LiRA's option without LiRA
  EXPECT_THROW(run_mia_audit(j, digits()), InvalidArgument);
  j = small_job(dir);
  j.population = 298;  // the digits test split has 297
  EXPECT_THROW(run_mia_audit(j, digits()), InvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir + "/target.safetensors"));  // every refusal before training
}

TEST(AuditMia, CliJson) {
  const std::string dir = testing::make_temp_dir("aegis_audit_mia_cli");
  const testing::CliRun r = testing::run_cli("audit mia --data digits --model mlp --shadows 4 --pool 100 --epochs 2 "
                                             "--device cpu --quiet --json --out-dir " + dir);
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["command"], "audit mia");
  EXPECT_EQ(j["shadows"], 4);
  for (const char* name : {"loss", "lira-online", "lira-online-fixed", "lira-offline", "lira-offline-fixed",
                           "rmia-online", "rmia-offline"})
    EXPECT_TRUE(j["attacks"].contains(name)) << name;
  // --attack picks families; the models are reused.
  const testing::CliRun rmia = testing::run_cli("audit mia --data digits --model mlp --shadows 4 --pool 100 --epochs 2 "
                                                "--device cpu --quiet --json --attack rmia --population 100 "
                                                "--rmia-gamma 2 --rmia-a 0.5 --out-dir " + dir);
  ASSERT_EQ(rmia.status, 0) << rmia.err;
  const nlohmann::json jr = nlohmann::json::parse(rmia.out);
  EXPECT_EQ(jr["attacks"].size(), 2u);
  EXPECT_EQ(jr["population"], 100);
  EXPECT_EQ(jr["models_trained"], 0);
  EXPECT_EQ(jr["rmia_a"], 0.5);
  const testing::CliRun fit = testing::run_cli("audit mia --data digits --model mlp --shadows 4 --pool 100 --epochs 2 "
                                               "--device cpu --quiet --json --attack rmia --rmia-fit-a --out-dir " + dir);
  ASSERT_EQ(fit.status, 0) << fit.err;
  const double a = nlohmann::json::parse(fit.out)["rmia_a"].get<double>();
  EXPECT_GE(a, 0.0);
  EXPECT_LE(a, 1.0);
  EXPECT_NEAR(a * 20.0, std::round(a * 20.0), 1e-9);  // a point of the grid
  // The ROC plot: a wrong extension is refused before any training; gnuplot draws the rest.
  const testing::CliRun jpg = testing::run_cli("audit mia --data digits --quiet --out-dir " + dir + "/jpg --roc r.jpg");
  EXPECT_EQ(jpg.status, 1);
  EXPECT_NE(jpg.err.find("must be .pdf, .svg or .png"), std::string::npos) << jpg.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/jpg/target.safetensors"));
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    const std::string png = dir + "/roc.png";
    const testing::CliRun plot = testing::run_cli("audit mia --data digits --model mlp --shadows 4 --pool 100 --epochs 2 "
                                                  "--device cpu --quiet --out-dir " + dir + " --roc " + png);
    ASSERT_EQ(plot.status, 0) << plot.err;
    EXPECT_GT(std::filesystem::file_size(png), 1000u);
    EXPECT_NE(plot.out.find("ROC curves: " + png), std::string::npos) << plot.out;
  }
  for (const std::string& args : {std::string("--shadows 5"), std::string("--target-epsilon 1"),
                                  std::string("--attack lira,shokri"), std::string("--augment 19"),
                                  std::string("--rmia-a 1.5"), std::string("--rmia-gamma 0"),
                                  std::string("--attack loss --augment 2"),
                                  std::string("--rmia-fit-a --rmia-a 0.3")}) {
    const testing::CliRun bad = testing::run_cli("audit mia --data digits --quiet --out-dir " + dir + " " + args);
    EXPECT_EQ(bad.status, 1) << args;
    EXPECT_EQ(bad.err.rfind("aegis: error: ", 0), 0u) << bad.err;
  }
}

TEST(AuditMia, LossAttackAucEqualsTheBruteForcePairCount) {
  // A linear model: every loss is computed here from W and b, and the AUC as the share of
  // (member, non-member) pairs where the member's loss is lower (ties ½), the Mann–Whitney form.
  const testing::LinearProblem p = testing::linear_problem(3, 60);
  const auto part = [&](std::int64_t from, std::int64_t count) {
    nn::Dataset d;
    d.name = "part";
    d.images = p.x.rows(from, from + count);
    std::vector<std::int32_t> y = p.labels.to_vector<std::int32_t>();
    // Half of the labels are moved to the next class, so that losses spread over a wide range.
    std::vector<std::int32_t> mine(y.begin() + from, y.begin() + from + count);
    for (std::size_t i = 0; i < mine.size(); i += 2) mine[i] = (mine[i] + 1) % 3;
    d.labels = Tensor::from_vector(mine, {count});
    d.num_classes = 3;
    return d;
  };
  const nn::Dataset members = part(0, 25), non_members = part(25, 35);
  const auto losses = [&](const nn::Dataset& d) {
    const std::vector<float> x = d.images.to_vector<float>();
    const std::vector<std::int32_t> y = d.labels.to_vector<std::int32_t>();
    std::vector<double> out;
    for (std::size_t i = 0; i < y.size(); ++i) {
      double z[3], total = 0.0;
      for (int k = 0; k < 3; ++k) {
        z[k] = p.b[k];
        for (std::int64_t j = 0; j < p.d; ++j) z[k] += static_cast<double>(p.w[k * p.d + j]) * x[i * p.d + j];
        total += std::exp(z[k]);
      }
      out.push_back(std::log(total) - z[y[i]]);
    }
    return out;
  };
  const std::vector<double> lm = losses(members), ln = losses(non_members);
  double pairs = 0.0, mean_m = 0.0;
  for (double a : lm) {
    mean_m += a / static_cast<double>(lm.size());
    for (double b : ln) pairs += a < b ? 1.0 : a == b ? 0.5 : 0.0;
  }
  const LossAttackReport r = loss_attack(*p.model, members, non_members, Device::cpu());
  EXPECT_EQ(r.members, 25);
  EXPECT_EQ(r.non_members, 35);
  // float32 logits against double: the losses agree to ~1e-6, no pair is that close.
  EXPECT_NEAR(r.metrics.auc, pairs / (25.0 * 35.0), 1e-12);
  EXPECT_NEAR(r.member_loss, mean_m, 1e-5);
  EXPECT_THROW(loss_attack(*p.model, members, nn::Dataset{}, Device::cpu()), InvalidArgument);
}

}  // namespace
}  // namespace aegis::privacy
