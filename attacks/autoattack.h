// AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
// of diverse parameter-free attacks", §4): a fixed sequence of attacks at one radius, each run
// only on the examples that every earlier attack left unbroken, and robust accuracy as the
// per-example worst case.
//   standard: APGD-CE (no restarts, 100 iterations), APGD-T (9 target classes, 100 iterations
//             each), FAB-T (9 targets, 100 iterations each, one run per target and no final
//             search, as the reference's n_restarts = 1), Square (5000 queries, proposals shared
//             by the batch and p's schedule unscaled, as the reference runs it).
//   rand:     APGD-CE and APGD-DLR with EOT over 20 draws per gradient, for randomized models.
// An example misclassified on the clean input counts as broken ("clean"). The adversarial point
// kept per input is that of the attack that broke it (the clean input when none did), inside the
// ε-ball and [0, 1].
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "attacks/attacks.h"
#include "attacks/per_example.h"
#include "core/progress.h"
#include "nn/data/dataset.h"

namespace aegis::attacks {

enum class AutoAttackVersion { Standard, Rand };
const char* autoattack_version_name(AutoAttackVersion version) noexcept;
AutoAttackVersion parse_autoattack_version(const std::string& name);

struct AutoAttackOptions {
  AutoAttackVersion version = AutoAttackVersion::Standard;
  Norm norm = Norm::Linf;
  float eps = 0.0f;        // ≥ 0
  int steps = 100;         // APGD iterations
  int target_classes = 9;  // APGD-T
  int queries = 5000;      // Square
  int eot_draws = 20;      // rand version
  std::uint64_t seed = 0;
  std::int64_t batch_size = 256;
  bool keep_adversarial = false;  // fill AutoAttackResult::adversarial
  bool bpda = false;              // gradient attacks go through non-differentiable layers (AttackOptions::bpda)
  // Square's proposals; its schedule of p is the reference's unscaled one (SquareOptions).
  SquareProposals square_proposals = SquareProposals::Shared;
};

struct AutoAttackResult {
  std::int64_t examples = 0;
  double clean_accuracy = 0.0;
  double robust_accuracy = 0.0;
  // Robust accuracy after each attack of the sequence, in order (cumulative worst case).
  std::vector<std::pair<std::string, double>> robust_after;
  std::vector<std::string> missing;  // attacks of the reference's sequence not run (none today)
  std::vector<PerExampleRow> per_example;
  Tensor adversarial;  // with keep_adversarial: the data's shape, f32 on the CPU
  double seconds = 0.0;
};

// The attack names of `version`'s sequence, in order, and those of them not implemented.
std::vector<std::string> autoattack_sequence(AutoAttackVersion version);

AutoAttackResult run_autoattack(nn::Module& model, const nn::Dataset& data, Device device,
                                const AutoAttackOptions& options, ProgressSink* progress = nullptr);

}  // namespace aegis::attacks
