// Empirical ε: is the ε that a DP-SGD run accounts for real? The one-run audit of Steinke, Nasr &
// Jagielski 2023 ("Privacy auditing with one (1) training run", §6–7, white-box gradient
// canaries), run inside aegis' own DP-SGD loop (privacy/dp_train.h):
//   - m canaries, each a Dirac gradient: ±C at one parameter coordinate, a record whose clipped
//     gradient has norm exactly C, the most any real example can have. The coordinates are the m
//     that the training data move least (the gradient of the data at the initial weights, summed
//     in absolute value over the training set; ties broken by the seed), so that a canary's
//     score is not drowned by the data's own gradients; signs keyed by (seed, kPurposeAuditSetup);
//   - each canary is included in the run with probability ½ (keyed by the seed); an included
//     canary joins each step's batch with the sampling rate q, keyed by (seed,
//     kPurposeAuditSampling, step), like every real example under Poisson sampling, so the run's
//     accounted (ε, δ) covers each canary as one more record. Its gradient goes in through
//     DpOptimizer::set_canary, before the noise;
//   - the score of a canary is sign · Σ_steps g̃[coordinate], summed over the noisy gradients the
//     optimizer released (DpOptimizer::set_update_observer), which a white-box adversary sees;
//   - the r/2 highest scores are guessed "included", the r/2 lowest "excluded"; with v right,
//     one_run_epsilon (privacy/audit_stats.h) is the ε that the run provably exceeds at the given
//     confidence unless it is (ε, δ)-DP. An ε_lower above the accounted ε is a failed audit: the
//     implementation (or its accounting) does not deliver its promise.
// The many-run audit (Jagielski, Ullman & Oprea 2020, §3; Nasr et al. 2021, §3 and Eq. 1, their
// strongest white-box "gradient canary" adversary): R models trained with one gradient canary
// (always included, then sampled with rate q at each step like any record) and R without it,
// each with its own training seed (the noise, the sampling, the initialization), scored by the
// same statistic. The first R/2 runs of each kind choose the threshold τ ("canary in" when the
// score is ≥ τ; a midpoint between two of their scores) that gives the highest bound on them; the other R/2 + R/2 runs
// count its false positives and negatives, and many_run_epsilon (privacy/audit_stats.h) turns the counts into ε_lower
// with Clopper–Pearson bounds. The ceiling is the bound of a perfect test on R/2 + R/2 runs
// (about 5.6 with 1000 runs each side at δ = 1e-5). With a runs directory each run leaves a
// record (run-<i>.json: its key (audit seed, run index, canary or not, training seed), the
// settings and the exact score), written atomically; a rerun reuses the records and trains only
// the missing runs, so a killed audit resumes and ends with the numbers of an uninterrupted one.
// Every run writes the same model file, which holds the last run trained. Under mpirun the runs
// are trained over the ranks (privacy/audit_farm.h; the runs directory is then required), rank 0
// returns the report and the other ranks an empty one; the one-run audit is refused there.
// Both audits also take input-space canaries (CanaryKind::Input) instead: a canary is then a
// held-out example (the test split) with a wrong label, joining the training set as one more
// record when included, and its score is −loss of the trained model on it (black box: only the
// released model is seen). Weaker than gradient canaries, but it audits the whole pipeline
// (clipping of real per-example gradients included) as a user's data would meet it.
// The guesses are fixed before the run (no choosing r after seeing the scores, which would void the
// confidence). The bound is a lower bound that is usually far below ε (a single run extracts
// little), so a passing audit is weak evidence, while a failing one is proof of a bug.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/progress.h"
#include "privacy/dp_job.h"

namespace aegis::privacy {

enum class CanaryKind { Gradient, Input };
CanaryKind parse_canary_kind(const std::string& name);  // "gradient" | "input"; InvalidArgument otherwise
const char* canary_kind_name(CanaryKind kind);

struct DpAuditOptions {
  CanaryKind canary = CanaryKind::Gradient;
  std::int64_t canaries = 1000;  // m ≤ the model's parameters (gradient) or the test split's size (input)
  std::int64_t guesses = 100;    // r ≤ m, even: r/2 from each end of the ranking
  double confidence = 0.95;      // of the ε lower bound
  std::uint64_t seed = 0;        // canary coordinates, signs, inclusion and per-step sampling
  // For testing the audit itself: the noise the optimizer really adds is σ·noise_scale while the
  // ledger still accounts for σ, which is the kind of bug the audit must catch. 1 in real use.
  double noise_scale = 1.0;
  // 0: the one-run audit. R (even, ≥ 4): the many-run audit with R runs with the canary and R
  // without it; canaries and guesses are then unused.
  std::int64_t runs = 0;
};

struct DpAuditJob {
  DpJob training;  // the DP-SGD run to audit (flat clipping, Poisson sampling, no resume)
  DpAuditOptions audit;
  std::string scores_out;  // TSV of every canary (index, parameter, element, sign, included, score); "" = none
  std::string runs_dir;    // many-run audit: one record per run, reused by a rerun; "" = none (not resumable)
};

struct DpAuditReport {
  DpReport training;
  std::string canary;  // "gradient" or "input"
  std::int64_t canaries = 0, included = 0, guesses = 0, correct = 0;
  double confidence = 0.0;
  double epsilon_lower = 0.0;      // the one-run bound at (δ, confidence) of the ledger
  double epsilon_ceiling = 0.0;    // the most r guesses can show: every guess right
  double epsilon_accounted = 0.0;  // the ledger's ε
  double delta = 0.0;
  bool failed = false;  // epsilon_lower > epsilon_accounted
  std::string scores_out;
};
nlohmann::json to_json(const DpAuditReport& report);

// Trains job.training with canaries, writes its model file (the canaries are in its weights: it
// is an audit artifact, not a model to release) and the scores, and bounds ε. InvalidArgument for
// m < 1, m above the model's parameter count, r odd or outside [2, m], confidence outside (0, 1),
// noise_scale outside (0, 1], clipping other than flat (gradient canaries), shuffled batches, secure
// noise or a resume; with input canaries, m above the test split's size.
DpAuditReport run_dp_audit(const DpAuditJob& job, const nn::DatasetSplit& split, ProgressSink* progress = nullptr);

struct ManyRunAuditReport {
  DpReport training;       // the last run's
  std::string canary;      // "gradient" or "input"
  std::int64_t runs = 0;   // R per kind: 2R models in all
  std::int64_t runs_trained = 0, runs_reused = 0;  // by this call; reused: records in runs_dir
  double threshold = 0.0;  // τ, chosen on the selection half
  std::int64_t selection_false_positives = 0, selection_false_negatives = 0;
  // The evaluation half: R/2 runs without the canary (negatives), R/2 with it (positives).
  std::int64_t negatives = 0, positives = 0, false_positives = 0, false_negatives = 0;
  double fpr_upper = 0.0, fnr_upper = 0.0;  // their Clopper–Pearson upper bounds
  double confidence = 0.0;
  double epsilon_lower = 0.0, epsilon_ceiling = 0.0, epsilon_accounted = 0.0, delta = 0.0;
  bool failed = false;  // epsilon_lower > epsilon_accounted
  double seconds_per_run = 0.0;  // of the runs trained by this call (0 when every run was reused)
  std::string scores_out, runs_dir;
};
nlohmann::json to_json(const ManyRunAuditReport& report);

// The many-run audit of the header comment (job.audit.runs = R). Writes the scores TSV (run,
// canary, half, seed, score) when job.scores_out is set. InvalidArgument for R odd or < 4 and
// the training restrictions of run_dp_audit; InvalidArgument for a run record in job.runs_dir that
// another audit (other settings, seeds or R) wrote, IoError for one that cannot be read.
ManyRunAuditReport run_many_run_dp_audit(const DpAuditJob& job, const nn::DatasetSplit& split,
                                         ProgressSink* progress = nullptr);

}  // namespace aegis::privacy
