// DP-SGD one step at a time, for a caller that drives its own loop (the Python package's
// aegis.privacy.DPSGD): the caller draws each batch, and the stepper does the rest of a step of
// Abadi et al. 2016, Alg. 1 — per-example gradients g_i of the cross-entropy, clipping
// ḡ_i = g_i · min(1, C/‖g_i‖₂), the noisy sum (Σ_i ḡ_i + N(0, σ²C²I)) / (qN), and the optimizer's
// update — then records the step in its ledger.
// The accounting (RDP or PRV, privacy/accountant.h) assumes that each batch is a Poisson sample
// with rate q of the training set: every example in independently with probability q. A caller
// that forms batches otherwise (shuffled fixed-size batches) gets an ε the sampled Gaussian
// mechanism's analysis does not cover; the stepper cannot check how a batch was drawn.
// The noise of step t is Philox (seed, kPurposeDpNoise, t), as in train_dp_classifier, so two
// steppers with the same seed, batches and model give the same parameters.
#pragma once

#include <cstdint>
#include <memory>

#include "nn/module.h"
#include "nn/optim.h"
#include "privacy/accountant.h"
#include "privacy/dp_train.h"
#include "privacy/noise.h"
#include "privacy/per_example.h"
#include "runtime/tensor.h"

namespace aegis::privacy {

struct DpStepperOptions {
  double noise_multiplier = 1.0;  // σ > 0
  double max_grad_norm = 1.0;     // C > 0
  double sampling_rate = 0.01;    // q in (0, 1]
  std::int64_t dataset_size = 0;  // N ≥ 1: the expected batch size qN divides the noisy sum
  double delta = 1e-5;            // δ in (0, 1) of the ledger's ε
  Accountant accountant = Accountant::Rdp;
  nn::OptimizerKind optimizer = nn::OptimizerKind::Sgd;
  float lr = 0.1f;
  float momentum = 0.0f;  // sgd only
  std::uint64_t seed = 0;
};

struct DpStepResult {
  std::int64_t step = 0;        // steps taken so far, this one included
  std::int64_t batch_size = 0;  // rows of this batch
  std::int64_t clipped = 0;     // examples whose gradient norm exceeded C
  double loss = 0.0;            // mean cross-entropy over the batch (0 for an empty batch)
};

class DpStepper {
 public:
  // Checks the options (InvalidArgument naming the bad value) and puts the model in training
  // mode with per-example capture on. The model must outlive the stepper.
  DpStepper(nn::Module& model, const DpStepperOptions& options);
  ~DpStepper();
  DpStepper(const DpStepper&) = delete;
  DpStepper& operator=(const DpStepper&) = delete;

  // One step on images x (f32 [B, ...], any device) with labels (i32 [B]); B may be 0 (a Poisson
  // sample can be empty: the step then adds noise only, as the mechanism requires).
  DpStepResult step(const Tensor& x, const Tensor& labels);
  // The phases composed so far and ε (δ = options.delta) — what a model file records. ε comes from
  // the accountant (milliseconds), so it is computed here, on demand, not at every step.
  PrivacyLedger ledger() const;
  std::int64_t steps() const { return m_steps; }
  const DpStepperOptions& options() const { return m_options; }

 private:
  nn::Module& m_model;
  DpStepperOptions m_options;
  ClipOptions m_clip;
  std::unique_ptr<DpOptimizer> m_optimizer;
  std::int64_t m_steps = 0;
};

}  // namespace aegis::privacy
