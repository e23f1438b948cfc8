// The trust profile (trust/trust_report.h, `aegis report MODEL --data D`): every part measured on
// the same test examples agrees with the domain call that measures it alone — ε with the file's
// ledger, the certified accuracy with CERTIFY on those examples at the file's σ, the attacks'
// robust accuracy with their own evaluation — certification is skipped, with the reason, for a model
// without Gaussian augmentation, and bad options are errors.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "attacks/evaluate.h"
#include "certify/analyze.h"
#include "certify/certify_run.h"
#include "certify/smoothing.h"
#include "nn/data/dataset.h"
#include "nn/job.h"
#include "nn/model_file.h"
#include "privacy/dp_train.h"
#include "privacy/model_report.h"
#include "support/testing.h"
#include "trust/trust_report.h"

namespace aegis {
namespace {

using testing::CliRun;
using testing::run_cli;

const std::string& dir() {
  static const std::string d = testing::make_temp_dir("trust_report");
  return d;
}

// A digits mlp trained with Gaussian augmentation (σ 0.25), and one trained with DP-SGD.
const std::string& smooth_model() {
  static const std::string path = [] {
    const std::string p = dir() + "/smooth.safetensors";
    const CliRun t = run_cli("train --data digits --model mlp --epochs 3 --noise-sigma 0.25 --device cpu --quiet --out " + p);
    EXPECT_EQ(t.status, 0) << t.err;
    return p;
  }();
  return path;
}
const std::string& dp_model() {
  static const std::string path = [] {
    const std::string p = dir() + "/dp.safetensors";
    const CliRun t = run_cli("train --data digits --model mlp --epochs 2 --dp --target-epsilon 4 --batch-size 64 "
                             "--lr 0.5 --device cpu --quiet --out " + p);
    EXPECT_EQ(t.status, 0) << t.err;
    return p;
  }();
  return path;
}

trust::TrustOptions small(const std::string& model) {
  trust::TrustOptions o;
  o.model_file = model;
  o.data = "digits";
  o.data_dir = testing::source_dir() + "/data";
  o.max = 120;
  o.n0 = 50;
  o.n = 400;
  o.suite_steps = 10;
  o.seed = 5;
  return o;
}

TEST(TrustReport, EachPartAgreesWithItsOwnMeasurement) {
  const trust::TrustOptions o = small(smooth_model());
  const trust::TrustReport r = trust::trust_report(o);
  EXPECT_EQ(r.examples, 120);
  EXPECT_EQ(r.ledger_status, "none");
  EXPECT_FALSE(r.epsilon.has_value());
  ASSERT_TRUE(r.sigma.has_value());
  EXPECT_DOUBLE_EQ(*r.sigma, 0.25);  // the file's aegis.noise_sigma
  // The recipe as the file records it, without the architecture's entries.
  EXPECT_EQ(r.training, privacy::training_metadata(nn::load_classifier(o.model_file).metadata));
  EXPECT_EQ(r.training.at("aegis.dataset"), "digits");
  EXPECT_FLOAT_EQ(std::stof(r.training.at("aegis.noise_sigma")), 0.25f);
  EXPECT_EQ(r.training.count("aegis.model"), 0u);

  nn::LoadedClassifier loaded = nn::load_classifier(o.model_file);
  const nn::Dataset test = nn::first_examples(nn::load_dataset("digits", o.data_dir).test, 120);
  EXPECT_DOUBLE_EQ(r.accuracy, nn::evaluate(*loaded.model, test, Device::cpu()).accuracy);

  certify::SmoothingOptions so;
  so.sigma = 0.25;
  so.n0 = 50;
  so.n = 400;
  so.seed = 5;
  so.batch = 1000;
  certify::SmoothedClassifier smoothed(*loaded.model, loaded.spec.input_shape, loaded.spec.num_classes, Device::cpu());
  std::vector<std::int64_t> idx(120);
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int64_t>(i);
  const auto certs = certify::certify_examples(smoothed, test, idx, so);
  const auto labels = test.labels.to_vector<std::int32_t>();
  std::vector<certify::SweepRow> rows;
  for (std::size_t i = 0; i < certs.size(); ++i) rows.push_back(certify::sweep_row(idx[i], labels[i], certs[i]));
  ASSERT_EQ(r.radii.size(), r.certified_accuracy.size());
  for (std::size_t k = 0; k < r.radii.size(); ++k)
    EXPECT_DOUBLE_EQ(r.certified_accuracy[k], certify::certified_accuracy(rows, r.radii[k])) << r.radii[k];
  EXPECT_DOUBLE_EQ(r.acr, certify::average_certified_radius(rows));

  attacks::EvaluationOptions eo;
  eo.method = attacks::AttackMethod::Pgd;
  eo.attack.eps = attacks::broadcast_per_example(0.1f, 1);
  eo.attack.steps = 20;
  eo.attack.seed = 5;
  EXPECT_DOUBLE_EQ(r.pgd_robust_accuracy, attacks::evaluate(*loaded.model, test, Device::cpu(), 10, eo).robust_accuracy);
  EXPECT_LE(r.pgd_robust_accuracy, r.accuracy);
  ASSERT_TRUE(r.suite_robust_accuracy.has_value());
  for (const auto& [name, acc] : r.suite_per_attack) EXPECT_LE(*r.suite_robust_accuracy, acc + 1e-12) << name;
  ASSERT_TRUE(r.mia_auc.has_value());
  EXPECT_GE(*r.mia_auc, 0.0);
  EXPECT_LE(*r.mia_auc, 1.0);
}

TEST(TrustReport, PrivacyFromTheLedgerAndCertificationSkippedWithoutSigma) {
  trust::TrustOptions o = small(dp_model());
  o.suite_steps = 0;
  o.membership = false;
  const trust::TrustReport r = trust::trust_report(o);
  const privacy::PrivacyLedger ledger =
      privacy::PrivacyLedger::from_metadata(nn::load_classifier(o.model_file).metadata, o.model_file);
  EXPECT_EQ(r.ledger_status, "verified");
  ASSERT_TRUE(r.epsilon.has_value());
  EXPECT_DOUBLE_EQ(*r.epsilon, ledger.epsilon);
  EXPECT_LE(*r.epsilon, 4.0);
  EXPECT_FALSE(r.sigma.has_value());
  EXPECT_NE(r.certification_skipped.find("--sigma"), std::string::npos);
  EXPECT_FALSE(r.suite_robust_accuracy.has_value());
  EXPECT_FALSE(r.mia_auc.has_value());
  // A given σ certifies anyway.
  o.sigma = 0.12;
  EXPECT_DOUBLE_EQ(*trust::trust_report(o).sigma, 0.12);
}

TEST(TrustReport, CommandLinePrintsJsonAndPlots) {
  const std::string plot = dir() + "/certified.svg";
  const CliRun r = run_cli("report " + smooth_model() + " --data digits --max 60 --n 200 --n0 20 --suite-steps 5 "
                           "--device cpu --quiet --json --plot " + plot);
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["command"], "report");
  EXPECT_EQ(j["examples"], 60);
  EXPECT_DOUBLE_EQ(j["sigma"].get<double>(), 0.25);
  EXPECT_EQ(j["training"]["aegis.dataset"], "digits");
  for (const char* key : {"accuracy", "pgd_robust_accuracy", "suite_robust_accuracy", "mia_auc", "acr"})
    EXPECT_TRUE(j[key].is_number()) << key;
  EXPECT_TRUE(j["certified_accuracy"].contains("0.5"));
  EXPECT_TRUE(std::filesystem::exists(plot));
  // Without --data, the file description as before.
  const CliRun d = run_cli("report " + smooth_model() + " --json");
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_EQ(nlohmann::json::parse(d.out)["ledger_status"], "none");
}

TEST(TrustReport, BadOptions) {
  const CliRun r = run_cli("report " + smooth_model() + " --data digits --eps -1");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("aegis: error: --eps"), std::string::npos) << r.err;
  trust::TrustOptions o = small(smooth_model());
  o.max = 0;
  testing::expect_error<InvalidArgument>([&] { trust::trust_report(o); }, "", "--max 0 must be at least 1");
  o = small(dir() + "/missing.safetensors");
  testing::expect_error<IoError>([&] { trust::trust_report(o); }, "missing.safetensors", "");
}

}  // namespace
}  // namespace aegis
