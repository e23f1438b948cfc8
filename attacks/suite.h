// A robustness evaluation with several attacks at one L∞ (or L2) radius, in the spirit of the
// checklist of Carlini et al. 2019 ("On Evaluating Adversarial Robustness", §§4–5): the reported
// robust accuracy is the per-example worst case — an example counts as robust only if no attack
// in the list broke it — and a set of sanity checks flags signs of gradient masking (Athalye,
// Carlini, Wagner 2018) as warnings rather than errors:
//   * zero or NaN input gradients on a sample of up to 64 examples (any NaN; or more than 10% of
//     the correctly classified examples with an all-zero gradient),
//   * a randomized model (two eval-mode forward passes on the same input differ),
//   * a one-step attack (FGSM) stronger than an iterative one (PGD) with the same ε,
//   * PGD robust accuracy on a sample of up to 256 examples not decreasing as ε grows
//     (ε/2 → ε → 2ε).
// Attack names: fgsm, bim, pgd, mifgsm, apgd-ce, apgd-dlr (in `norm`), and cw-l2 with norm l2
// (a minimal-norm attack: it breaks an example only when its perturbation is within ε). The
// default list adds both APGD losses to the four gradient-sign attacks, as AutoAttack does.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "attacks/attacks.h"
#include "attacks/evaluate.h"
#include "attacks/per_example.h"
#include "core/progress.h"
#include "nn/data/dataset.h"

namespace aegis::attacks {

struct SuiteOptions {
  std::vector<AttackMethod> attacks = {AttackMethod::Fgsm,   AttackMethod::Bim,    AttackMethod::Pgd,
                                       AttackMethod::Mifgsm, AttackMethod::ApgdCe, AttackMethod::ApgdDlr};
  Norm norm = Norm::Linf;  // C&W (cw-l2) needs L2; it runs with at least 100 steps
  float eps = 0.0f;  // ≥ 0
  int steps = 100;   // iterative attacks (APGD's reference budget)
  int restarts = 1;  // PGD
  std::uint64_t seed = 0;
  std::int64_t batch_size = 256;
  bool sanity_checks = true;
  bool keep_adversarial = false;  // fill SuiteResult::adversarial
  bool bpda = false;              // AttackOptions::bpda for every attack
};

struct SuiteResult {
  double clean_accuracy = 0.0;
  double robust_accuracy = 0.0;  // worst case over the attacks, per example
  std::vector<std::pair<std::string, double>> per_attack;  // each attack's own robust accuracy
  std::vector<std::string> warnings;
  std::vector<std::int32_t> robust;  // per example: 1 when no attack broke it
  // Per example: the first attack (in list order) that broke it and its point; the clean input
  // when none did. `adversarial` (with keep_adversarial) holds those points, data's shape, CPU.
  std::vector<PerExampleRow> per_example;
  Tensor adversarial;
  std::int64_t examples = 0;
  double seconds = 0.0;
};

// Runs every attack of `options.attacks` on `data` (images on the CPU; moved to `device` batch
// by batch). Progress: one phase in attack-batches.
SuiteResult run_suite(nn::Module& model, const nn::Dataset& data, Device device, const SuiteOptions& options,
                      ProgressSink* progress = nullptr);

}  // namespace aegis::attacks
