// An adversarial training run from start to model file (nn/train_job.h describes the shared
// frame): a fresh zoo model trained by attacks/adv_train.h, evaluated on the clean test split and
// written with its method and radius in the metadata. `aegis train --adv` and the Python package
// call it.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "attacks/adv_train.h"
#include "core/progress.h"
#include "nn/train_job.h"

namespace aegis::attacks {

struct AdvReport {
  nn::TrainReport training;
  std::string adv_method;
  float adv_eps = 0.0f;
  int adv_steps = 0;
  std::int64_t adv_epochs_run = 0;
  // With the catastrophic-overfitting check (fgsm-rs): held-out PGD-10 accuracy per epoch, whether
  // it stopped training, and the (1-based) epoch whose weights were kept.
  std::vector<double> adv_check_robust_accuracy;
  bool adv_stopped_early = false;
  std::int64_t adv_best_epoch = 0;
};
nlohmann::json to_json(const AdvReport& report);  // the training keys and the adv_* keys, flat

// Trains adversarially and writes job.out. InvalidArgument for ε ≤ 0 or options out of range, and
// for Gaussian augmentation (job.train.noise_sigma > 0: a different robustness notion). A stop by the
// overfitting check is reported through progress->warning as well as in the report.
AdvReport run_adversarial_training(const nn::TrainJob& job, const AdvTrainOptions& adv, const nn::DatasetSplit& split,
                                   ProgressSink* progress = nullptr);

}  // namespace aegis::attacks
