// Robustness evaluation with one attack: run it on every example of a dataset, batch by batch on
// the model's device, and report clean and robust accuracy, the attack success rate among the
// examples the model classifies correctly, and the size of the successful perturbations. The
// `aegis attack` command, the demo's PGD evaluation and the Python package call this; the suite
// of several attacks is attacks/suite.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attacks/attacks.h"
#include "attacks/per_example.h"
#include "core/progress.h"
#include "nn/data/dataset.h"

namespace aegis::attacks {

// The options of particular methods, beside the shared AttackOptions.
struct MethodOptions {
  // C&W (CwOptions): κ, c₀, Adam's learning rate, binary-search steps, early abort.
  float cw_confidence = 0.0f;
  float cw_initial_const = 1e-3f;
  float cw_lr = 1e-2f;
  int cw_binary_search_steps = 9;
  bool cw_abort_early = true;
  int target_classes = 9;  // APGD-T, FAB-T
  int queries = 5000;      // Square: forward passes per example
  float p_init = 0.8f;     // Square
  float apgd_rho = 0.75f;  // APGD (CE, DLR, T): the step-size checkpoint condition ρ
  // FAB-T's FabOptions::final_search_steps; Square's SquareOptions::proposals and rescale_schedule.
  int fab_final_search_steps = 0;
  SquareProposals square_proposals = SquareProposals::Shared;
  bool square_rescale_schedule = true;
};

// One attack by method on a batch (x on the model's device), with `options` (CwOptions,
// ApgdOptions and SquareOptions take it as their `attack`) and `method_options` for what is
// particular to the method. C&W is minimal-norm: when run here at radius ε it breaks an example
// only if its perturbation fits in the ε-ball, unless `cw_unbounded`.
AttackResult run_attack(AttackMethod method, nn::Module& model, const Tensor& x, const Tensor& labels,
                        const AttackOptions& options, bool cw_unbounded = false,
                        const MethodOptions& method_options = MethodOptions());

// The predicted class of every example of x (on the model's device): the argmax of one forward
// pass (draws = 1), or for a randomized model the class predicted most often over `draws` passes
// (ties: the smaller class). InvalidArgument for draws < 1.
std::vector<std::int32_t> predict_classes(nn::Module& model, const Tensor& x, int draws);

struct EvaluationOptions {
  AttackMethod method = AttackMethod::Pgd;
  // norm, eps, step size, steps, restarts (PGD and APGD only; 1 for the others), seed, targeted.
  // With targeted, the target of an example of label y is (y + 1) mod K, K the model's classes
  // (the targets field is filled batch by batch).
  AttackOptions attack;
  MethodOptions method_options;
  std::int64_t batch_size = 256;  // examples per attack batch, ≥ 1
  bool keep_adversarial = false;  // fill Evaluation::adversarial (all examples, on the CPU)
  // Clean and adversarial predictions: the argmax of one forward pass (1), or for a randomized
  // model (a PixelDP noise layer) the class predicted most often over this many passes (ties:
  // the smaller class), the prediction rule of Lecuyer et al. 2019 and Cohen et al. 2019.
  int predict_draws = 1;
};

struct Evaluation {
  std::int64_t examples = 0;
  double clean_accuracy = 0.0;
  double robust_accuracy = 0.0;       // the prediction on the kept iterate is the true label
  double attack_success_rate = 0.0;   // successes among the correctly classified examples
  double mean_perturbation_norm = 0.0;    // over those successes, in the attack's norm
  double median_perturbation_norm = 0.0;  // (C&W: L2)
  std::vector<std::int32_t> robust;  // per example: 1 when the kept iterate is classified correctly
  Tensor adversarial;                // with keep_adversarial: the data's shape, f32 on the CPU
  std::vector<PerExampleRow> per_example;  // one row per example, in order
  double seconds = 0.0;
};

// Runs options.method on every example of `data` (images on the CPU, moved to `device` batch by
// batch; the model must already live there). `num_classes` sets the targets of a targeted attack.
// Progress: one phase in examples.
Evaluation evaluate(nn::Module& model, const nn::Dataset& data, Device device, std::int64_t num_classes,
                    const EvaluationOptions& options, ProgressSink* progress = nullptr);

}  // namespace aegis::attacks
