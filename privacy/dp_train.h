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
#include "privacy/per_example.h"

namespace aegis::privacy {

struct DpTrainOptions {
  double noise_multiplier = 0.0;  // σ; 0 means: calibrate it to target_epsilon
  double target_epsilon = 0.0;    // used when noise_multiplier is 0
  double delta = 1e-5;
  double max_grad_norm = 1.0;     // C
  std::optional<double> sampling_rate;  // q in (0, 1]; unset: batch_size / N
  std::string clipping = "flat";  // flat | per-layer | adaptive
  // Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially private learning
  // with adaptive clipping", Alg. 1 with the geometric update): after each step
  //   b̃ = (Σ_i 1[‖g_i‖ ≤ C] + N(0, σ_b²)) / (qN),   C ← C·exp(−η·(b̃ − γ)),
  // starting from max_grad_norm. The count is released with noise σ_b, so the gradient noise
  // multiplier becomes σ_Δ = (σ⁻² − (2σ_b)⁻²)^(−1/2) (their Thm 1: the pair is then one Gaussian
  // mechanism of multiplier σ, which is what the accountant composes). Needs 2σ_b > σ.
  double target_quantile = 0.5;  // γ
  double clip_lr = 0.2;          // η
  double count_noise = 0.0;      // σ_b; 0 means qN/20 (the paper's recommendation)
  std::string accountant = "rdp";  // rdp | prv
  NormMethod norm_method = NormMethod::Auto;
  bool secure = false;            // OS-seeded cryptographic sampling and noise (CPU noise)
  // "poisson" (what the accountants assume) or "shuffle": fixed-size batches of a shuffled order,
  // each example once per epoch. The ε reported for "shuffle" is the Poisson accountant's number,
  // which is NOT a proven guarantee for shuffled batches; the ledger records the sampling used.
  std::string sampling = "poisson";
};

// What a model trained with DP carries: the phases that were composed, and the resulting ε.
struct PrivacyLedger {
  std::vector<SgmPhase> phases;
  double max_grad_norm = 0.0;
  double delta = 0.0;
  double epsilon = 0.0;
  std::string accountant;
  std::string clipping;
  std::string sampling = "poisson";  // "shuffle" if any phase used shuffled batches
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
  double loss = 0.0;            // mean loss over the sample (0 for an empty sample)
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

// Trains `model` in place with DP-SGD. `train_options` gives epochs, batch size (the expected
// batch size when sampling_rate is 0), lr, optimizer (sgd | adam | adamw), schedule, seed and
// device. `previous` (may be null) is the ledger of the checkpoint the model was loaded from.
// Throws InvalidArgument for out-of-range hyperparameters (σ ≤ 0, q ∉ (0,1], δ ∉ (0,1), ε ≤ 0,
// C ≤ 0, ...), NumericError if training diverges.
DpTrainResult train_dp_classifier(nn::Module& model, const nn::Dataset& train, const nn::TrainOptions& train_options,
                                  const DpTrainOptions& dp, const PrivacyLedger* previous = nullptr,
                                  const std::function<void(const DpStepInfo&)>& on_step = {},
                                  const std::function<void(const DpEpochResult&)>& on_epoch = {});

// Steps of a run: epochs × round(1/q).
std::int64_t dp_steps_per_epoch(double sampling_rate);

}  // namespace aegis::privacy
