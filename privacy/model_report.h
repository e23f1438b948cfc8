// What a classifier file holds, for `aegis report`: the architecture it rebuilds, its size, the
// training metadata, and the privacy ledger with the result of checking its digest
// (privacy/ledger_digest.h). Reading a file never fails because of its ledger: a ledger that
// does not parse or does not verify is reported as such.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/progress.h"
#include "nn/train.h"
#include "nn/zoo.h"
#include "privacy/dp_train.h"
#include "privacy/ledger_digest.h"

namespace aegis::privacy {

struct ModelReport {
  std::string path;
  std::string format;           // "aegis.format" ("classifier-1"), empty in files that predate it
  nn::ModelSpec spec;           // architecture, activation, input shape, classes (seed is not stored)
  std::int64_t parameters = 0;  // weights in all tensors
  std::int64_t tensors = 0;
  // Metadata entries that describe neither the architecture nor the ledger: the dataset,
  // Gaussian augmentation, adversarial training, PixelDP settings, and anything else a writer added.
  std::map<std::string, std::string> training;
  LedgerCheck ledger_check;
  std::optional<PrivacyLedger> ledger;  // when the file holds a ledger that parses
  std::string ledger_error;             // why it does not parse, when it does not
};

// The entries of a model file's metadata that describe its training (ModelReport::training).
std::map<std::string, std::string> training_metadata(const std::map<std::string, std::string>& metadata);

// Throws IoError naming the file when it is not a classifier file aegis can load.
ModelReport describe_model_file(const std::string& path);
// `aegis report --json`'s object (the ledger's phases in full).
nlohmann::json to_json(const ModelReport& report);

// `aegis eval`: the test accuracy of a model file on a dataset (nn::load_dataset with `data_dir`
// as its search hint; progress: one "eval" phase in examples), and the verification of its
// ledger (after the evaluation, which may have moved the model: the digest reads host copies).
struct EvalFileReport {
  std::string model_file, model, dataset, device;
  nn::EvalResult eval;
  LedgerCheck ledger;
};
EvalFileReport evaluate_model_file(const std::string& model_file, const std::string& dataset,
                                   const std::string& data_dir, Device device, ProgressSink* progress = nullptr);
nlohmann::json to_json(const EvalFileReport& report);

}  // namespace aegis::privacy
