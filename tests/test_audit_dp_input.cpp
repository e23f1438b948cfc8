// Input-space canaries for both DP audits and the resumable many-run audit (privacy/audit_dp.h)
// on the bundled digits set with the mlp. An input canary is a mislabelled held-out example; with
// the optimizer's noise far below the ledger's (the test-only noise_scale) the trained model
// remembers the included ones, and the audit must see it; at a small accounted ε a correct run
// must pass. A resumed many-run audit must end with the numbers of an uninterrupted one, bit for
// bit. The seeds are fixed: the tests are deterministic.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.h"
#include "nn/data/dataset.h"
#include "privacy/audit_canary.h"
#include "privacy/audit_dp.h"
#include "support/testing.h"

namespace aegis::privacy {
namespace {

const nn::DatasetSplit& digits() {
  static const nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  return split;
}

DpAuditJob input_job(double target_epsilon, double noise_scale, const std::string& dir, std::int64_t epochs) {
  DpAuditJob j;
  j.training.job.model = "mlp";
  j.training.job.dataset = "digits";
  j.training.job.train.epochs = epochs;
  j.training.job.train.batch_size = 64;
  j.training.job.train.lr = 0.002f;
  j.training.job.train.optimizer = nn::OptimizerKind::Adam;
  j.training.job.train.seed = 3;
  j.training.job.out = dir + "/audited.safetensors";
  j.training.dp.target_epsilon = target_epsilon;
  j.training.dp.delta = 1e-5;
  j.audit.canary = CanaryKind::Input;
  j.audit.canaries = 200;
  j.audit.guesses = 40;
  j.audit.seed = 11;
  j.audit.noise_scale = noise_scale;
  j.scores_out = dir + "/canaries.tsv";
  return j;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(AuditDpInput, CanariesAreMislabelledHeldOutExamples) {
  const nn::Dataset c = audit_detail::input_canaries(digits(), 50, 11);
  ASSERT_EQ(c.size(), 50);
  const std::vector<std::int32_t> wrong = c.labels.to_vector<std::int32_t>();
  const std::vector<std::int32_t> right = digits().test.labels.to_vector<std::int32_t>();
  for (std::size_t i = 0; i < wrong.size(); ++i) {
    EXPECT_NE(wrong[i], right[i]) << i;
    EXPECT_GE(wrong[i], 0);
    EXPECT_LT(wrong[i], 10);
  }
  EXPECT_EQ(c.images.to_vector<float>(), nn::take(digits().test, 0, 50).images.to_vector<float>());
  EXPECT_THROW(audit_detail::input_canaries(digits(), 298, 11), InvalidArgument);  // 297 test examples
}

TEST(AuditDpInput, OneRunSeesBrokenNoiseAndPassesCorrectDp) {
  const std::string dir = testing::make_temp_dir("aegis_audit_dp_input");
  const DpAuditReport broken = run_dp_audit(input_job(1.0, 0.001, dir, 20), digits());
  RecordProperty("correct", std::to_string(broken.correct));
  EXPECT_EQ(broken.canary, "input");
  EXPECT_GT(broken.epsilon_lower, 0.0) << "correct " << broken.correct << " of " << broken.guesses;
  const DpAuditReport correct = run_dp_audit(input_job(1.0, 1.0, dir, 20), digits());
  EXPECT_FALSE(correct.failed) << "lower bound " << correct.epsilon_lower;
  EXPECT_LE(correct.epsilon_lower, correct.epsilon_accounted);
  // The scores file: one row per canary, no parameter or sign.
  const std::string tsv = read_text(correct.scores_out);
  EXPECT_EQ(std::count(tsv.begin(), tsv.end(), '\n'), 201);
  EXPECT_NE(tsv.find("\n0\t-\t-\t-\t"), std::string::npos);
  DpAuditJob too_many = input_job(1.0, 1.0, dir, 1);
  too_many.audit.canaries = 298;
  EXPECT_THROW(run_dp_audit(too_many, digits()), InvalidArgument);
}

TEST(AuditDpInput, ManyRunResumesBitForBit) {
  const std::string dir = testing::make_temp_dir("aegis_audit_resume");
  DpAuditJob j = input_job(2.0, 1.0, dir, 1);
  j.audit.runs = 4;
  j.runs_dir = dir + "/runs";
  j.scores_out = dir + "/whole.tsv";
  const ManyRunAuditReport whole = run_many_run_dp_audit(j, digits());
  EXPECT_EQ(whole.canary, "input");
  EXPECT_EQ(whole.runs_trained, 8);
  EXPECT_EQ(whole.runs_reused, 0);
  const std::string run2 = read_text(dir + "/runs/run-2.json");

  // A killed audit: two records lost. The rerun trains those two and reuses the other six.
  std::filesystem::remove(dir + "/runs/run-2.json");
  std::filesystem::remove(dir + "/runs/run-5.json");
  j.scores_out = dir + "/resumed.tsv";
  const ManyRunAuditReport resumed = run_many_run_dp_audit(j, digits());
  EXPECT_EQ(resumed.runs_trained, 2);
  EXPECT_EQ(resumed.runs_reused, 6);
  EXPECT_EQ(read_text(dir + "/whole.tsv"), read_text(dir + "/resumed.tsv"));
  EXPECT_EQ(resumed.threshold, whole.threshold);
  EXPECT_EQ(resumed.epsilon_lower, whole.epsilon_lower);
  EXPECT_EQ(resumed.epsilon_accounted, whole.epsilon_accounted);
  EXPECT_EQ(resumed.false_positives, whole.false_positives);
  EXPECT_EQ(resumed.false_negatives, whole.false_negatives);
  // The retrained run's record equals the lost one except for its training time.
  const nlohmann::json a = nlohmann::json::parse(run2), b = nlohmann::json::parse(read_text(dir + "/runs/run-2.json"));
  EXPECT_EQ(a["score"], b["score"]);
  EXPECT_EQ(a["settings"], b["settings"]);
  EXPECT_EQ(a["training"]["epsilon"], b["training"]["epsilon"]);

  // Records of other settings are refused, never mixed in; a damaged one is an IoError.
  DpAuditJob other = j;
  other.audit.seed = 12;
  EXPECT_THROW(run_many_run_dp_audit(other, digits()), InvalidArgument);
  other = j;
  other.audit.canary = CanaryKind::Gradient;
  EXPECT_THROW(run_many_run_dp_audit(other, digits()), InvalidArgument);
  other = j;
  other.training.job.train.lr = 0.003f;
  EXPECT_THROW(run_many_run_dp_audit(other, digits()), InvalidArgument);
  {
    std::ofstream damaged(dir + "/runs/run-0.json");
    damaged << "{\"format\": \"aegis audit dp run v1\", \"run\": ";
  }
  EXPECT_THROW(run_many_run_dp_audit(j, digits()), IoError);
}

TEST(AuditDpInput, ManyRunWithTheInputCanary) {
  // 20 + 20 runs at ε = 0.5 (ceiling 0.81 with 10 + 10 evaluation runs, so a correct run could
  // fail). 20 epochs at lr 0.01: with σ/1000 every run that trained on the mislabelled example
  // fits it (loss about 0.1–5 against 7–12 without it), so the broken audit classifies every
  // evaluation run right and fails; the correct one passes. About 0.7 s per run.
  const std::string dir = testing::make_temp_dir("aegis_audit_many_input");
  DpAuditJob j = input_job(0.5, 0.001, dir, 20);
  j.audit.runs = 20;
  j.training.job.train.batch_size = 100;
  j.training.job.train.lr = 0.01f;
  const ManyRunAuditReport broken = run_many_run_dp_audit(j, digits());
  RecordProperty("broken_epsilon_lower", std::to_string(broken.epsilon_lower));
  EXPECT_NEAR(broken.epsilon_accounted, 0.5, 0.03);
  EXPECT_EQ(broken.false_positives + broken.false_negatives, 0);
  EXPECT_TRUE(broken.failed) << "lower bound " << broken.epsilon_lower;
  j.audit.noise_scale = 1.0;
  const ManyRunAuditReport correct = run_many_run_dp_audit(j, digits());
  EXPECT_FALSE(correct.failed) << "lower bound " << correct.epsilon_lower;
}

TEST(AuditDpInput, Cli) {
  const std::string dir = testing::make_temp_dir("aegis_audit_input_cli");
  const std::string base =
      "audit dp --data digits --model mlp --epochs 1 --batch-size 100 --device cpu --quiet --json "
      "--target-epsilon 2 --canary input --out " +
      dir + "/m.safetensors";
  const testing::CliRun one = testing::run_cli(base + " --canaries 50 --guesses 10");
  ASSERT_EQ(one.status, 0) << one.err;
  EXPECT_EQ(nlohmann::json::parse(one.out)["method"], "one-run, input canaries");
  const testing::CliRun many = testing::run_cli(base + " --runs 4 --out-dir " + dir + "/runs");
  ASSERT_EQ(many.status, 0) << many.err;
  EXPECT_EQ(nlohmann::json::parse(many.out)["runs_trained"], 8);
  const testing::CliRun again = testing::run_cli(base + " --runs 4 --out-dir " + dir + "/runs");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(nlohmann::json::parse(again.out)["runs_reused"], 8);
  for (const std::string& args :
       {std::string(" --runs 4 --out-dir " + dir + "/runs --audit-seed 5"), std::string(" --canary pixels"),
        std::string(" --canaries 298"), std::string(" --out-dir " + dir + "/one")}) {
    const testing::CliRun bad = testing::run_cli(base + args);
    EXPECT_EQ(bad.status, 1) << args;
    EXPECT_EQ(bad.err.rfind("aegis: error: ", 0), 0u) << args << ": " << bad.err;
  }
}

}  // namespace
}  // namespace aegis::privacy
