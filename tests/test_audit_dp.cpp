// The one-run DP audit (privacy/audit_dp.h) on the bundled digits set with the mlp: it must catch
// a run whose noise is 100× below what its ledger accounts for, and must not flag correct DP-SGD.
// The guarantee behind "must not flag" is statistical (a correct run is flagged with probability
// at most 1 − confidence = 5%); the seeds are fixed, so the test is deterministic.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "nn/data/dataset.h"
#include "privacy/audit_dp.h"
#include "support/testing.h"

namespace aegis::privacy {
namespace {

const nn::DatasetSplit& digits() {
  static const nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  return split;
}

DpAuditJob audit_job(double target_epsilon, double noise_scale, const std::string& dir) {
  DpAuditJob j;
  j.training.job.model = "mlp";
  j.training.job.dataset = "digits";
  j.training.job.train.epochs = 4;
  j.training.job.train.batch_size = 64;
  j.training.job.train.lr = 0.002f;
  j.training.job.train.optimizer = nn::OptimizerKind::Adam;
  j.training.job.train.seed = 3;
  j.training.job.out = dir + "/audited.safetensors";
  j.training.dp.target_epsilon = target_epsilon;
  j.training.dp.delta = 1e-5;
  j.audit.canaries = 500;
  j.audit.guesses = 100;
  j.audit.seed = 11;
  j.audit.noise_scale = noise_scale;
  j.scores_out = dir + "/canaries.tsv";
  return j;
}

TEST(AuditDp, CatchesNoiseFarBelowTheLedger) {
  const std::string dir = testing::make_temp_dir("aegis_audit_dp");
  const DpAuditReport r = run_dp_audit(audit_job(1.0, 0.01, dir), digits());
  RecordProperty("epsilon_lower", std::to_string(r.epsilon_lower));  // in --gtest_output=json
  RecordProperty("correct", std::to_string(r.correct));
  EXPECT_NEAR(r.epsilon_accounted, 1.0, 0.05);  // calibrated to the target
  EXPECT_GT(r.epsilon_lower, r.epsilon_accounted) << "correct " << r.correct << " of " << r.guesses;
  EXPECT_TRUE(r.failed);
  EXPECT_LE(r.epsilon_lower, r.epsilon_ceiling);
  // The scores file has a header and one row per canary.
  std::ifstream in(r.scores_out);
  std::string line;
  std::int64_t rows = 0;
  while (std::getline(in, line)) ++rows;
  EXPECT_EQ(rows, 501);
}

TEST(AuditDp, PassesCorrectDpSgd) {
  const std::string dir = testing::make_temp_dir("aegis_audit_dp");
  for (double eps : {4.0, 8.0}) {
    const DpAuditReport r = run_dp_audit(audit_job(eps, 1.0, dir), digits());
    EXPECT_FALSE(r.failed) << "eps " << eps << ": lower bound " << r.epsilon_lower;
    EXPECT_LE(r.epsilon_lower, r.epsilon_accounted);
    EXPECT_NEAR(r.epsilon_accounted, eps, 0.05 * eps);
    EXPECT_GE(r.correct, 0);
    EXPECT_LE(r.correct, r.guesses);
    EXPECT_GT(r.included, 200);  // Binomial(500, ½): 250 ± 11 (a 4.5σ margin)
    EXPECT_LT(r.included, 300);
  }
}

TEST(AuditDp, RejectsBadOptions) {
  const std::string dir = testing::make_temp_dir("aegis_audit_dp");
  DpAuditJob j = audit_job(4.0, 1.0, dir);
  j.audit.guesses = 101;
  EXPECT_THROW(run_dp_audit(j, digits()), InvalidArgument);
  j = audit_job(4.0, 1.0, dir);
  j.audit.canaries = 10'000'000;
  EXPECT_THROW(run_dp_audit(j, digits()), InvalidArgument);
  j = audit_job(4.0, 1.0, dir);
  j.training.dp.clipping = Clipping::Adaptive;
  EXPECT_THROW(run_dp_audit(j, digits()), InvalidArgument);
  j = audit_job(4.0, 1.0, dir);
  j.audit.noise_scale = 2.0;
  EXPECT_THROW(run_dp_audit(j, digits()), InvalidArgument);
}

TEST(AuditDp, CliReportsAndStrictExitStatus) {
  const std::string dir = testing::make_temp_dir("aegis_audit_dp_cli");
  const testing::CliRun r = testing::run_cli("audit dp --data digits --model mlp --target-epsilon 8 --epochs 1 "
                                             "--canaries 200 --guesses 40 --device cpu --quiet --json --out " +
                                             dir + "/m.safetensors --scores " + dir + "/s.tsv --strict");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["command"], "audit dp");
  EXPECT_FALSE(j["failed"].get<bool>());
  EXPECT_NEAR(j["epsilon_accounted"].get<double>(), 8.0, 0.4);
  // A confidence of 1% makes chance-level guessing "prove" an epsilon above the accounted 0.2:
  // not a meaningful audit, but a failed one, which --strict turns into exit status 3.
  const std::string weak = "audit dp --data digits --model mlp --target-epsilon 0.2 --epochs 1 --canaries 200 "
                           "--guesses 40 --confidence 0.01 --device cpu --quiet --json --out " + dir + "/w.safetensors";
  const testing::CliRun failed = testing::run_cli(weak + " --strict");
  EXPECT_EQ(failed.status, 3) << failed.err;
  EXPECT_NE(failed.err.find("AUDIT FAILED"), std::string::npos) << failed.err;
  EXPECT_TRUE(nlohmann::json::parse(failed.out)["failed"].get<bool>());
  EXPECT_EQ(testing::run_cli(weak).status, 0);  // without --strict: reported, not an error status
  const testing::CliRun bad = testing::run_cli("audit dp --data digits --epochs 1 --quiet --guesses 3 --target-epsilon 2 --out " +
                                               dir + "/m2.safetensors");
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.err.rfind("aegis: error: ", 0), 0u) << bad.err;
}

}  // namespace
}  // namespace aegis::privacy
