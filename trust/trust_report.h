// The trust profile of one model file (`aegis report MODEL --data D`): what each domain says about
// it, measured on the same test examples in one run —
//   accuracy        clean test accuracy;
//   privacy         the ledger's ε at δ (accounted, verified against the weights), or none;
//   certification   CERTIFY (Cohen et al. 2019, Alg. 2) at the model's σ (aegis.noise_sigma, the
//                   Gaussian augmentation it was trained with) or a given one: certified accuracy
//                   at radii, the average certified radius, abstentions;
//   attacks         PGD-L∞ robust accuracy (Madry et al. 2018) and the suite's worst case;
//   membership      the loss attack (Yeom et al. 2018) on training vs test examples: AUC and TPR at
//                   1% and 0.1% FPR — what an adversary without shadow models learns.
// trust/ sits above the three domains it composes (privacy, attacks, certify) and below apps/.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/progress.h"

namespace aegis::trust {

struct TrustOptions {
  std::string model_file;
  std::string data = "fashion-mnist";  // nn::load_dataset spec
  std::string data_dir;                // its search hint
  Device device = Device::cpu();
  std::int64_t max = 1000;  // test examples (and training examples for membership), ≥ 1
  std::uint64_t seed = 0;
  // Certification: σ > 0, or 0 for the file's aegis.noise_sigma (skipped, with the reason, when
  // the file has none); CERTIFY's n0, n, α and batch.
  double sigma = 0.0;
  std::int64_t n0 = 100, n = 1000, batch = 1000;
  double alpha = 0.001;
  std::vector<double> radii = {0.0, 0.25, 0.5, 0.75, 1.0};
  // Attacks: L∞ radius in [0, 1] pixel units, PGD steps; the suite (its default attacks) with
  // suite_steps iterations, or none when suite_steps is 0.
  double eps = 0.1;
  int pgd_steps = 20;
  int suite_steps = 100;
  bool membership = true;
  std::string plot;  // certified accuracy against radius into this file (.png, .svg, .pdf), or ""
};

struct TrustReport {
  std::string model_file, model, data, device;
  std::int64_t examples = 0;
  double accuracy = 0.0;
  // How it was trained: the file's metadata beyond architecture and ledger (privacy::
  // training_metadata: the dataset, noise σ, copies, crops and flips, regularizer weights, ...).
  std::map<std::string, std::string> training;
  // Privacy: the ledger's check ("none", "verified", ...), and its ε and δ when there is one.
  std::string ledger_status;
  std::optional<double> epsilon, delta;
  // Certification (empty when skipped, with the reason).
  std::optional<double> sigma;
  std::string certification_skipped;
  std::vector<double> radii;
  std::vector<double> certified_accuracy;  // at radii
  double acr = 0.0, abstention_rate = 0.0;
  // Attacks.
  double eps = 0.0;
  double pgd_robust_accuracy = 0.0;
  std::optional<double> suite_robust_accuracy;
  std::vector<std::pair<std::string, double>> suite_per_attack;
  // Membership (the loss attack), when asked for.
  std::optional<double> mia_auc, mia_tpr_at_1_fpr, mia_tpr_at_0_1_fpr;
  std::map<std::string, double> seconds;  // per part
};

// Loads the model and the data, runs every part on the first `max` test examples (InvalidArgument
// for bad options, IoError for unreadable files; progress: one phase per part).
TrustReport trust_report(const TrustOptions& options, ProgressSink* progress = nullptr);
// `aegis report MODEL --data D --json`'s object.
nlohmann::json to_json(const TrustReport& report);

}  // namespace aegis::trust
