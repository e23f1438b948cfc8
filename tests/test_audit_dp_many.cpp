// The many-run DP audit (privacy/audit_dp.h, run_many_run_dp_audit) on the bundled digits set
// with the mlp: 20 runs with the gradient canary and 20 without, so the evaluation half (10 + 10)
// can show at most ε ≈ 0.81 at δ = 1e-5. The recipe is calibrated to ε = 0.5, below that
// ceiling, so that a correct run could fail the audit (with probability ≤ 5%) and a run whose
// noise is 1000× below its ledger must. The seeds are fixed: the test is deterministic.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.h"
#include "nn/data/dataset.h"
#include "privacy/audit_dp.h"
#include "privacy/audit_stats.h"
#include "support/testing.h"

namespace aegis::privacy {
namespace {

const nn::DatasetSplit& digits() {
  static const nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  return split;
}

// 8 epochs at q = 100/1500: an included canary is sampled about 8 times per run, and missed
// altogether with probability (1 − q)^120 ≈ 3e-4 (a run that never samples it cannot be told
// apart, whatever the noise).
DpAuditJob many_run_job(double target_epsilon, double noise_scale, const std::string& dir, std::int64_t epochs = 8) {
  DpAuditJob j;
  j.training.job.model = "mlp";
  j.training.job.dataset = "digits";
  j.training.job.train.epochs = epochs;
  j.training.job.train.batch_size = 100;
  j.training.job.train.lr = 0.002f;
  j.training.job.train.optimizer = nn::OptimizerKind::Adam;
  j.training.job.train.seed = 3;
  j.training.job.out = dir + "/audited.safetensors";
  j.training.dp.target_epsilon = target_epsilon;
  j.training.dp.delta = 1e-5;
  j.audit.runs = 20;
  j.audit.seed = 11;
  j.audit.noise_scale = noise_scale;
  j.scores_out = dir + "/runs.tsv";
  return j;
}

// The bound recomputed from the runs file: the counts of the evaluation half at the report's
// threshold, through many_run_epsilon.
void expect_bound_matches_runs(const ManyRunAuditReport& r) {
  std::ifstream in(r.scores_out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "run\tcanary\thalf\tseed\tscore");
  std::int64_t rows = 0, fp = 0, fn = 0, neg = 0, pos = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::int64_t run = 0, canary = 0;
    std::string half;
    std::uint64_t seed = 0;
    double score = 0.0;
    fields >> run >> canary >> half >> seed >> score;
    ++rows;
    if (half != "evaluation") continue;
    // The file rounds scores to 9 digits: an evaluation score within rounding of the threshold
    // would make this recount ambiguous (none is).
    ASSERT_GT(std::fabs(score - r.threshold), 1e-6 * std::max(1.0, std::fabs(score)));
    const bool guess_in = score >= r.threshold;
    if (canary) {
      ++pos;
      fn += !guess_in;
    } else {
      ++neg;
      fp += guess_in;
    }
  }
  EXPECT_EQ(rows, 40);
  EXPECT_EQ(pos, 10);
  EXPECT_EQ(neg, 10);
  EXPECT_EQ(fp, r.false_positives);
  EXPECT_EQ(fn, r.false_negatives);
  EXPECT_DOUBLE_EQ(r.epsilon_lower, many_run_epsilon(fp, neg, fn, pos, r.delta, 0.95));
  EXPECT_DOUBLE_EQ(r.fpr_upper, clopper_pearson(fp, neg, 0.95).upper);
  // 10 + 10 runs: a perfect test has FPR, FNR ≤ 1 − 0.025^(1/10) (Clopper–Pearson at 0 of 10).
  const double u = 1.0 - std::pow(0.025, 0.1);
  EXPECT_NEAR(r.epsilon_ceiling, std::log((1.0 - r.delta - u) / u), 1e-9);
}

TEST(AuditDpManyRun, CatchesNoiseFarBelowTheLedger) {
  const std::string dir = testing::make_temp_dir("aegis_audit_many");
  const ManyRunAuditReport r = run_many_run_dp_audit(many_run_job(0.5, 0.001, dir), digits());
  RecordProperty("epsilon_lower", std::to_string(r.epsilon_lower));
  EXPECT_NEAR(r.epsilon_accounted, 0.5, 0.03);
  EXPECT_EQ(r.false_positives + r.false_negatives, 0) << "the canary should stand out from σ/1000 noise";
  EXPECT_GT(r.epsilon_lower, r.epsilon_accounted);
  EXPECT_TRUE(r.failed);
  expect_bound_matches_runs(r);
}

TEST(AuditDpManyRun, PassesCorrectDpSgd) {
  const std::string dir = testing::make_temp_dir("aegis_audit_many");
  const ManyRunAuditReport r = run_many_run_dp_audit(many_run_job(0.5, 1.0, dir), digits());
  EXPECT_FALSE(r.failed) << "lower bound " << r.epsilon_lower;
  EXPECT_LE(r.epsilon_lower, r.epsilon_accounted);
  EXPECT_NEAR(r.epsilon_accounted, 0.5, 0.03);
  expect_bound_matches_runs(r);
  // At ε = 4 the ceiling of 20 runs (0.81) is below the accounted ε: the audit cannot fail, and says so.
  const ManyRunAuditReport loose = run_many_run_dp_audit(many_run_job(4.0, 1.0, dir, 1), digits());
  EXPECT_FALSE(loose.failed);
  EXPECT_LT(loose.epsilon_ceiling, loose.epsilon_accounted);
}

TEST(AuditDpManyRun, RejectsBadOptions) {
  const std::string dir = testing::make_temp_dir("aegis_audit_many");
  for (std::int64_t runs : {2, 5, -4}) {
    DpAuditJob j = many_run_job(1.0, 1.0, dir);
    j.audit.runs = runs;
    EXPECT_THROW(run_many_run_dp_audit(j, digits()), InvalidArgument) << runs;
  }
  DpAuditJob j = many_run_job(1.0, 1.0, dir);
  j.training.dp.clipping = Clipping::Adaptive;
  EXPECT_THROW(run_many_run_dp_audit(j, digits()), InvalidArgument);
}

TEST(AuditDpManyRun, CliReportsTheManyRunBound) {
  const std::string dir = testing::make_temp_dir("aegis_audit_many_cli");
  const std::string base =
      "audit dp --runs 4 --data digits --model mlp --epochs 1 --batch-size 100 --device cpu "
      "--quiet --json --out " +
      dir + "/m.safetensors";
  const testing::CliRun r = testing::run_cli(base + " --target-epsilon 2 --scores " + dir + "/runs.tsv --strict");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["method"], "many-run, gradient canary");
  EXPECT_EQ(j["runs"], 4);
  EXPECT_EQ(j["negatives"].get<int>() + j["positives"].get<int>(), 4);
  EXPECT_FALSE(j["failed"].get<bool>());  // --strict: exit status 3 only on failure (the one-run suite checks 3)
  const testing::CliRun bad = testing::run_cli(base + " --target-epsilon 2 --runs 3");
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.err.rfind("aegis: error: ", 0), 0u) << bad.err;
}

}  // namespace
}  // namespace aegis::privacy
