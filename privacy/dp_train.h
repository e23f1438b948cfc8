// DP-SGD training of a classifier (Abadi et al. 2016, Alg. 1) on aegis' own pieces:
//   Poisson sampling (privacy/sampling.h) → forward, summed cross-entropy, ONE backward pass
//   with per-example capture → per-example clipping by book-keeping (privacy/per_example.h) →
//   Gaussian noise fused with the optimizer update, divided by the expected batch size
//   (privacy/noise.h) → accounting of the spent (ε, δ) (privacy/accountant.h).
// An "epoch" is round(1/q) steps. Every run produces a PrivacyLedger, which travels with the
// model in its safetensors metadata; a run resumed from such a file composes its new phase with
// the old ones and continues the noise step counter, so no noise draw is reused.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nn/data/dataset.h"
#include "nn/module.h"
#include "nn/train.h"
#include "privacy/accountant.h"
#include "privacy/dp_augment.h"
#include "privacy/noise.h"
#include "privacy/per_example.h"

namespace aegis::privacy {

// How per-example gradients are bounded: one norm C over all layers (flat), one C_l per layer
// (per-layer), or a C that follows a quantile of the gradient norms (adaptive).
enum class Clipping { Flat, PerLayer, Adaptive };
const char* clipping_name(Clipping clipping) noexcept;  // "flat", "per-layer", "adaptive"
Clipping parse_clipping(const std::string& name);        // InvalidArgument naming the text otherwise
// How batches are drawn: Poisson sampling (what the accountants assume) or fixed-size batches of
// a shuffled order, each example once per epoch. The ε reported for Shuffle is the Poisson
// accountant's number, which is NOT a proven guarantee for shuffled batches; the ledger records
// the sampling used.
enum class Sampling { Poisson, Shuffle };
const char* sampling_name(Sampling sampling) noexcept;  // "poisson", "shuffle"
Sampling parse_sampling(const std::string& name);

// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially private learning
// with adaptive clipping", Alg. 1 with the geometric update): after each step
//   b̃ = (Σ_i 1[‖g_i‖ ≤ C] + N(0, σ_b²)) / (qN),   C ← C·exp(−η·(b̃ − γ)),
// starting from the noise options' max_grad_norm. The count is released with noise σ_b, so the
// gradient noise multiplier becomes σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2) (their Thm 1: the pair is then
// one Gaussian mechanism of multiplier σ, which is what the accountant composes). Needs 2σ_b > σ.
struct AdaptiveClipOptions {
  double target_quantile = 0.5;  // γ
  double clip_lr = 0.2;          // η
  double count_noise = 0.0;      // σ_b; 0 means qN/20 (the paper's recommendation)
};

struct DpTrainOptions {
  // σ (noise_multiplier; 0 means: calibrate it to target_epsilon), C (max_grad_norm, the
  // starting C under adaptive clipping) and secure (OS-seeded cryptographic sampling and noise).
  // The trainer fills in the rest (expected batch size, seed, first step) from the plan.
  DpNoiseOptions noise = default_noise();
  // The norm method, and the per-layer norms of per-layer clipping (empty: C/√L each). The
  // trainer sets max_grad_norm (from noise.max_grad_norm, moving under adaptive clipping) and
  // per_layer (from `clipping`).
  ClipOptions clip;
  Clipping clipping = Clipping::Flat;
  AdaptiveClipOptions adaptive;  // with Clipping::Adaptive
  double target_epsilon = 0.0;   // used when noise.noise_multiplier is 0
  double delta = 1e-5;
  std::optional<double> sampling_rate;  // q in (0, 1]; unset: batch_size / N
  Accountant accountant = Accountant::Rdp;
  Sampling sampling = Sampling::Poisson;
  // Augmentation multiplicity K (De et al. 2022, §3.1): each sampled example enters the step as K
  // copies, each with its own Gaussian noise of the training options' noise_sigma (Gaussian
  // augmentation for randomized smoothing), its own crop and flip under the training options'
  // `augment` (keyed by dataset index and copy) and its own
  // random start under make_input. The copies' gradients are averaged per example BEFORE clipping
  // (ClipOptions::group_size), so the sensitivity C, the sampling and therefore the ledger are
  // those of K = 1. Without any transform, K identical copies give the K = 1 update. K = 1
  // without a transform or hook is the plain path, unchanged.
  std::int64_t augmult = 1;
  // Per-row input transformation of every step (DpInputFn: row r may depend on row r only), e.g.
  // attacks::dp_adversarial_inputs for adversarial examples of the current model. Applied after
  // the noise, with per-example capture paused. Unset: none.
  DpInputFn make_input;
  // Bytes of per-example gradients one batch may form when K > 1 (each layer's [B, params]
  // group sums plus a convolution's [B·K, params] rows): the sample is processed in chunks of B
  // examples that fit, whose clipped sums add up before the one noisy update.
  std::size_t augmult_bytes = std::size_t{256} << 20;
  // The consistency regularizer in every example's loss. Needs augmult ≥ 2 and Gaussian noise on
  // the copies (the training options' noise_sigma > 0): it measures how the noisy copies'
  // predictions disagree. Unset: the plain averaged cross-entropy.
  std::optional<ConsistencyOptions> consistency;
  // For auditing (privacy/audit_dp.h): called before every noisy update with the optimizer and
  // the step (counted from 0 in this run), after the step's clipped sums are in place; it may set
  // a canary or an update observer on the optimizer. Unset: nothing happens.
  std::function<void(DpOptimizer& optimizer, std::int64_t step)> before_update;

  static DpNoiseOptions default_noise() {
    DpNoiseOptions n;
    n.max_grad_norm = 1.0;
    return n;
  }
};

// What a run will do, decided before its first step: q, the steps, σ (calibrated when asked
// for) and how adaptive clipping splits it. train_dp_classifier follows it; a front end shows it.
struct DpPlan {
  double sampling_rate = 0.0;           // q
  std::int64_t steps_per_epoch = 0;     // round(1/q)
  std::int64_t steps = 0;               // this run's: epochs × steps_per_epoch
  std::int64_t steps_before = 0;        // the resumed ledger's
  double noise_multiplier = 0.0;        // σ, the mechanism's (given or calibrated)
  double gradient_noise_multiplier = 0.0;  // σ_Δ added to the gradient sum (σ unless adaptive)
  double count_noise = 0.0;             // σ_b of the unclipped count (adaptive only)
  double expected_batch_size = 0.0;     // q·N
};

// What a model trained with DP carries: the phases that were composed, and the resulting ε.
struct PrivacyLedger {
  std::vector<SgmPhase> phases;
  double max_grad_norm = 0.0;
  double delta = 0.0;
  double epsilon = 0.0;
  Accountant accountant = Accountant::Rdp;
  Clipping clipping = Clipping::Flat;
  Sampling sampling = Sampling::Poisson;  // Shuffle if any phase used shuffled batches
  bool secure = false;
  std::int64_t steps() const;
  // Keys "aegis.dp.*" (phases as JSON) for the model file, and back. from_metadata returns an
  // empty ledger (no phases) when the file has none; a malformed one is an IoError.
  std::map<std::string, std::string> to_metadata() const;
  static PrivacyLedger from_metadata(const std::map<std::string, std::string>& metadata, const std::string& source);
};

struct DpStepInfo {
  std::int64_t epoch = 0, step = 0, total_steps = 0;
  std::int64_t batch_size = 0;  // this step's Poisson sample size
  std::int64_t clipped = 0;     // examples whose gradient norm exceeded C
  double max_grad_norm = 0.0;   // C used by this step (moves under adaptive clipping)
  double loss = 0.0;            // mean loss over the sample, regularizer included (0 for an empty sample)
  float lr = 0.0f;
};

struct DpEpochResult {
  std::int64_t epoch = 0;
  double train_loss = 0.0, train_accuracy = 0.0;
  double epsilon = 0.0;  // spent so far, ledger included
  double seconds = 0.0;
};

struct DpTrainResult {
  PrivacyLedger ledger;
  double noise_multiplier = 0.0;  // σ used (calibrated or given)
  double sampling_rate = 0.0;
  std::int64_t steps = 0;         // this run's steps
  double seconds = 0.0;
  std::vector<DpEpochResult> epochs;
};

// Checks the options (InvalidArgument for out-of-range hyperparameters: σ ≤ 0, q ∉ (0,1],
// δ ∉ (0,1), ε ≤ 0, C ≤ 0, a resumed ledger with another δ or C, ...) and plans the run on a
// training set of `dataset_size` examples; calibrates σ when asked to.
DpPlan plan_dp(std::int64_t dataset_size, const nn::TrainOptions& train_options, const DpTrainOptions& dp,
               const PrivacyLedger* previous = nullptr);

// Trains `model` in place with DP-SGD, following `plan` (from plan_dp with the same arguments).
// `train_options` gives epochs, batch size (the expected batch size when sampling_rate is unset),
// lr, optimizer (sgd | adam | adamw), schedule, seed and device. `previous` (may be null) is the
// ledger of the checkpoint the model was loaded from. NumericError if training diverges.
DpTrainResult train_dp_classifier(nn::Module& model, const nn::Dataset& train, const nn::TrainOptions& train_options,
                                  const DpTrainOptions& dp, const DpPlan& plan, const PrivacyLedger* previous = nullptr,
                                  const std::function<void(const DpStepInfo&)>& on_step = {},
                                  const std::function<void(const DpEpochResult&)>& on_epoch = {});
// The same, planning the run itself.
DpTrainResult train_dp_classifier(nn::Module& model, const nn::Dataset& train, const nn::TrainOptions& train_options,
                                  const DpTrainOptions& dp, const PrivacyLedger* previous = nullptr,
                                  const std::function<void(const DpStepInfo&)>& on_step = {},
                                  const std::function<void(const DpEpochResult&)>& on_epoch = {});

// Steps of a run: epochs × round(1/q).
std::int64_t dp_steps_per_epoch(double sampling_rate);

}  // namespace aegis::privacy
