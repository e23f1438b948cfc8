// One run of `aegis pixeldp certify` (Lecuyer et al. 2019): on the examples of a dataset, the
// conventional accuracy of the Monte Carlo expected scores, the certified accuracy at each
// robustness threshold T (correct and robustness size ≥ T), and, when asked, the accuracy under
// Carlini–Wagner L2 attacks on the expected scores (attacks/attacks.h): the attack
// differentiates through D fixed noise draws, as the paper attacks PixelDP networks through their
// expected output rather than the noise-free network, and its result is judged by a fresh n-draw
// prediction like the clean input. An example counts as correct at size T when its clean
// prediction is right and the attack found no input within L2 distance T whose prediction
// differs from the label. (The one arrow from certify/ to attacks/; attacks/ never includes certify/.)
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "attacks/attacks.h"
#include "certify/pixeldp.h"
#include "core/progress.h"
#include "nn/data/dataset.h"

namespace aegis::certify {

struct PixelDpAttackOptions {
  PixelDpAttackOptions() {
    cw.attack.steps = 30;
    cw.binary_search_steps = 4;
    cw.initial_const = 1.0f;
    cw.lr = 0.1f;
    // κ > 0 carries the adversarial inputs a margin past the boundary, so that the n fresh draws
    // that judge them mostly agree; the no-progress abort is off, since a sampled loss need not
    // fall every steps/10 iterations.
    cw.confidence = 0.5f;
    cw.abort_early = false;
  }
  std::int64_t max = 100;   // attack the first `max` of the examples, ≥ 1
  std::int64_t batch = 50;  // examples per attack batch, ≥ 1
  // Noise draws per attack step, the same D draws at every step, so the attack optimizes one
  // deterministic sample average (with fresh draws CW's iterates, which stop at the decision
  // boundary, flip back and forth and it keeps almost none). Measured on a digits mlp with
  // σ = 0.25 at the input, first 20 test examples: with these settings 19 are broken; with fresh
  // draws at every pass, κ = 0 and 50 steps × 5 searches, none.
  std::int64_t draws = 10;
  attacks::CwOptions cw;
};

struct PixelDpRunOptions {
  PixelDpCertifyOptions certify;  // draws n, confidence η, bound, batch (phase: set by the run)
  std::vector<double> thresholds = {0.05, 0.1, 0.2, 0.3, 0.5};  // robustness sizes T, each ≥ 0
  std::optional<PixelDpAttackOptions> attack;                  // L2 models only
};

struct PixelDpAttackResult {
  std::int64_t examples = 0;
  double clean_accuracy = 0.0;
  std::vector<double> accuracy_at;  // at each threshold
  double accuracy_unbounded = 0.0;  // correct and never broken, at any distance
  double median_norm = 0.0;         // of the successful perturbations of correct examples
  double seconds = 0.0;
};

struct PixelDpRun {
  std::vector<PixelDpCertificate> certificates;  // one per example
  double conventional_accuracy = 0.0;
  std::vector<double> certified_accuracy;  // at each threshold
  double mean_robustness_size = 0.0;
  std::optional<PixelDpAttackResult> attack;
};

// Certifies every example of `test` (key ids = positions), then attacks when asked. `net` and
// its noise layer's seed are the caller's (already on `device`). Progress: "certify" in
// examples, then "attack cw-l2" in examples.
PixelDpRun run_pixeldp_certify(const std::shared_ptr<PixelDpNet>& net, const PixelDpMechanism& mechanism,
                               const nn::Dataset& test, const PixelDpRunOptions& options, Device device,
                               ProgressSink* progress = nullptr);

}  // namespace aegis::certify
