// Membership inference: what does a model trained with a given recipe leak about its training
// set? The audit trains everything itself, so that membership is known:
//   - the pool: the first `pool` examples of the training split;
//   - the target: the recipe trained on a random half of the pool (keyed by the seed);
//   - K shadow models: the same recipe, where every pool example is in exactly K/2 of them (the
//     balanced design of Carlini et al. 2022, "Membership inference attacks from first
//     principles", §IV-C), each model's training seed its own;
// and then attacks the target on every pool example with
//   - loss: score −ℓ(x, y) (Yeom, Giacomelli, Fredrikson & Jha 2018: members have lower loss);
//   - LiRA (Carlini et al. 2022, Alg. 1) on φ = z_y − logsumexp_{j≠y} z_j (their logit-scaled
//     confidence, computed from the logits for stability), which the shadow models make roughly
//     Gaussian per example: online, score log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²); offline,
//     the one-sided (φ − μ_out)/σ_out; each with per-example σ or one global σ (the mean of the
//     per-example variances: their "fixed variance", better with few shadow models). With
//     augment = N > 1 every example is also queried mirrored and shifted (audit_mia_query.h), one
//     Gaussian per view, and the per-view log-likelihood ratios (offline: z-scores) add up
//     (their §VI-A: the views as one Gaussian with diagonal covariance);
//   - RMIA (Zarifzadeh, Liu & Shokri 2024, "Low-cost high-power membership inference attacks",
//     ICML, §3): the share of population samples z (the test split: never in any model) with
//     LR(x, z) = (Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z)) ≥ γ, Pr(·|θ) the softmax probability of the
//     true label and Pr(x) the mean of Pr(x|θ') over the shadow (reference) models (online), or
//     ½((1 + a)·Pr_OUT(x) + (1 − a)) from the models without x only (offline; a given by the
//     caller, 0.3 by default as the paper uses for offline attacks, or fitted on the shadow models
//     by fit_rmia_offline_a).
// Model files go to out_dir (target.safetensors, shadow-<k>.safetensors), each tagged with the
// audit that made it; a rerun with the same audit reuses every file already written (a killed
// audit resumes), and a file of another audit is an InvalidArgument. With roc_plot set, the ROC
// curves are drawn on log-log axes. The attacks to run are chosen by family (loss, lira, rmia);
// they do not change the models, so a rerun with other attacks reuses every model file. Under
// mpirun the missing models are trained over the ranks first (privacy/audit_farm.h); rank 0
// returns the report, the other ranks an empty one.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/progress.h"
#include "nn/train_job.h"
#include "privacy/audit_stats.h"
#include "privacy/dp_train.h"

namespace aegis::privacy {

struct RmiaOptions {
  double gamma = 1.0;      // γ > 0: x beats z when LR(x, z) ≥ γ
  double offline_a = 0.3;  // a in [0, 1] of the offline Pr(x)
  bool fit_a = false;      // run_mia_audit: fit a on the shadow models (fit_rmia_offline_a) instead
};

struct MiaJob {
  nn::TrainJob job;                // the recipe: model, activation, train options (seed: of the target), dataset label
  std::optional<DpTrainOptions> dp;  // set: the recipe is DP-SGD with these options
  std::int64_t shadows = 16;       // K: even, ≥ 4
  std::int64_t pool = 0;           // examples of the training split in the pool; 0 = all of them
  std::uint64_t seed = 0;          // the pool halves
  std::string out_dir;             // model files and scores.tsv; must exist or be creatable
  std::string roc_plot;            // a .png, .svg or .pdf of the ROC curves (plot_roc_curves); "" = none
  std::vector<std::string> attacks = {"loss", "lira", "rmia"};  // families to run, each at most once
  std::int64_t augment = 1;        // LiRA's queries per example, in [1, 18] (1: the example alone)
  std::int64_t population = 0;     // RMIA's z: the first examples of the test split; 0 = all of them
  RmiaOptions rmia;
};

struct MiaAttackResult {
  std::string name;  // loss, lira-online, lira-online-fixed, lira-offline, lira-offline-fixed, rmia-online, rmia-offline
  AttackMetrics metrics;
};

struct MiaReport {
  std::string model, dataset, recipe;  // recipe: "standard" or "dp"
  std::int64_t pool = 0, members = 0, shadows = 0;
  std::int64_t augment = 1, population = 0;  // LiRA's queries per example; RMIA's z (0 without RMIA)
  double rmia_a = 0.0;  // the offline a used, given or fitted (0 without RMIA)
  std::int64_t models_trained = 0, models_reused = 0;  // this run's, over target and shadows
  double target_train_accuracy = 0.0, target_test_accuracy = 0.0;  // members; the test split
  double target_epsilon = 0.0;  // the target's accounted ε (DP recipe), else 0
  double seconds = 0.0, seconds_per_model = 0.0;  // training time of the models trained in this run
  std::vector<MiaAttackResult> attacks;
  std::string scores_out;  // out_dir/scores.tsv
  std::string roc_plot;    // the job's, when drawn
};
nlohmann::json to_json(const MiaReport& report);

// Runs the audit (see the header comment). InvalidArgument for K odd or < 4, a pool of fewer than
// 4 examples or more than the training split, an empty out_dir, a model file in out_dir that
// another audit wrote; whatever training throws for a bad recipe.
MiaReport run_mia_audit(const MiaJob& job, const nn::DatasetSplit& split, ProgressSink* progress = nullptr);

// Draws the curves (name, curve) as TPR against FPR on log-log axes with gnuplot (core/gnuplot.h),
// chance dashed, each curve's AUC in its legend entry. InvalidArgument for a path that is not
// .png, .svg or .pdf or for no curves; IoError as draw_with_gnuplot.
void plot_roc_curves(const std::vector<std::pair<std::string, RocCurve>>& curves, const std::string& title,
                     const std::string& path);

// The loss attack alone (Yeom, Giacomelli, Fredrikson & Jha 2018: score −ℓ(x, y)) against a
// trained model whose members and non-members are known from outside (e.g. a slice of its
// training split and of the test split): no shadow models, so it is cheap and weak, a first
// look rather than an audit. InvalidArgument when either set is empty.
struct LossAttackReport {
  std::int64_t members = 0, non_members = 0;
  double member_loss = 0.0, non_member_loss = 0.0;  // mean cross-entropy of each set
  AttackMetrics metrics;
};
nlohmann::json to_json(const LossAttackReport& report);
LossAttackReport loss_attack(nn::Module& model, const nn::Dataset& members, const nn::Dataset& non_members,
                             Device device);

// The LiRA scores alone, for given φ: phi[k][a·n + i] of model k on view a of example i (queries
// views, n examples), in_model[k][i] whether model k trained on i; target_phi[a·n + i] the
// target's. Returns the four LiRA variants in the order of MiaAttackResult::name (online,
// online-fixed, offline, offline-fixed), summed over the views. Every example must be in at least
// 2 and out of at least 2 models.
std::vector<std::vector<double>> lira_scores(const std::vector<std::vector<double>>& phi,
                                             const std::vector<std::vector<bool>>& in_model,
                                             const std::vector<double>& target_phi, std::int64_t queries = 1);

// The RMIA scores alone (see the header comment), from log-probabilities of the true label:
// log_prob[k][i] of reference model k on pool example i, in_model[k][i] whether k trained on i,
// target_log_prob[i] the target's; population_log_prob[k][j] and target_population_log_prob[j] on
// the population samples z, which no model trained on. Returns {online, offline}, each score in
// [0, 1]. InvalidArgument for mismatched sizes, no population, γ ≤ 0, a outside [0, 1], or an
// example in every reference model (offline has nothing to average).
std::vector<std::vector<double>> rmia_scores(const std::vector<std::vector<double>>& log_prob,
                                             const std::vector<std::vector<bool>>& in_model,
                                             const std::vector<double>& target_log_prob,
                                             const std::vector<std::vector<double>>& population_log_prob,
                                             const std::vector<double>& target_population_log_prob,
                                             const RmiaOptions& options = {});

// RMIA's offline a fitted on the reference models alone: each model in turn plays the target, the
// others are its references, and the a of the grid 0, 0.05, …, 1 whose offline scores have the
// highest mean AUC over those pseudo-targets wins (ties: the smaller a). The paper sets a per
// dataset from reference models in this way; its default 0.3 needs no fitting. Arguments as for
// rmia_scores; InvalidArgument for fewer than 3 models or an example without a pseudo-target on
// each side of membership (then the AUC means nothing).
double fit_rmia_offline_a(const std::vector<std::vector<double>>& log_prob,
                          const std::vector<std::vector<bool>>& in_model,
                          const std::vector<std::vector<double>>& population_log_prob, double gamma = 1.0);

}  // namespace aegis::privacy
