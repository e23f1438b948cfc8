// A DP-SGD training run from start to model file (nn/train_job.h describes the shared frame): a
// fresh zoo model, a model file to fine-tune (job.init: an ONNX file or an aegis file without a
// ledger), or a DP model file whose weights and privacy ledger the run continues; the
// loop of privacy/dp_train.h; the ledger sealed into the file with its digest over the trained
// weights (privacy/ledger_digest.h). `aegis train --dp` and the Python package call it.
#pragma once

#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "core/progress.h"
#include "nn/train_job.h"
#include "privacy/dp_train.h"

namespace aegis::privacy {

struct DpJob {
  nn::TrainJob job;
  DpTrainOptions dp;
  // A DP model file to continue: its weights, and its ledger composed into the new one. The
  // ledger must carry a digest that matches the weights, unless trust_unverified_ledger (files
  // written before aegis stored digests), which resumes with a warning.
  std::string resume;
  bool trust_unverified_ledger = false;
  // Further keys for the model file (e.g. the adversarial training method of dp.make_input).
  std::map<std::string, std::string> metadata;
};

struct DpReport {
  nn::TrainReport training;
  double epsilon = 0.0, delta = 0.0;  // the whole ledger's, resumed phases included
  double noise_multiplier = 0.0, sampling_rate = 0.0, max_grad_norm = 0.0;
  std::string accountant, clipping, sampling;
  std::int64_t total_steps = 0;  // over every phase of the ledger
  std::int64_t augmult = 1;      // copies per sampled example (DpTrainOptions::augmult)
  // The consistency regularizer's weights, when it was on.
  std::optional<ConsistencyOptions> consistency;
};
nlohmann::json to_json(const DpReport& report);  // the training keys and the privacy keys, flat

// The model-file keys that describe how a DP run transformed its examples: aegis.augmult (K > 1),
// aegis.noise_sigma (σ > 0, as nn::run_training writes it) and aegis.consistency.lambda / .eta
// (with the regularizer). The command line and the Python package write the same keys.
std::map<std::string, std::string> dp_transform_metadata(const DpTrainOptions& dp, float noise_sigma);

// Trains with DP-SGD and writes job.out. Warns (progress->warning) when δ ≥ 1/N and for shuffled
// batches, whose ε the accountants do not prove. Gaussian augmentation (job.train.noise_sigma > 0)
// noises every copy of each sampled example and is recorded as aegis.noise_sigma beside the
// ledger, for `aegis certify` (privacy/dp_augment.h); the consistency regularizer's weights as
// aegis.consistency.lambda and aegis.consistency.eta. InvalidArgument for options out of range, for a resumed
// file without a ledger or with inputs of another shape, for an init file with a ledger (that
// is --resume's); IoError for a ledger that does not match its weights or, without
// trust_unverified_ledger, has no digest.
DpReport run_dp_training(const DpJob& job, const nn::DatasetSplit& split, ProgressSink* progress = nullptr);

}  // namespace aegis::privacy
