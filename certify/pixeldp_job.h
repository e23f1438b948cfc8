// `aegis pixeldp train` and `aegis pixeldp certify` as library calls (the Python package makes
// the same ones): a PixelDP network built, trained and written (certify/pixeldp.h), and a PixelDP
// model file certified on a dataset's test split, with the optional CW-L2 attack of
// certify/pixeldp_run.h. The reports' fields are named as the commands' JSON keys.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "certify/pixeldp.h"
#include "certify/pixeldp_run.h"
#include "core/progress.h"
#include "nn/data/dataset.h"

namespace aegis::certify {

struct PixelDpTrainJob {
  std::string model = "cnn-fmnist", activation = "relu";  // zoo model and its activation
  int position = 0;                                       // noise layer: 0 input, 1/2 after layer 1/2
  PixelDpParams params;
  PixelDpTrainOptions options;  // train.seed also seeds the initialization and the training noise
  std::int64_t max_train = 0;   // train on the first N training examples (0: all)
  std::string out = "pixeldp.safetensors";
  std::string dataset;  // the data's label, recorded in the file and the report
};

struct PixelDpTrainReport {
  std::string model, activation, dataset, norm, kind, device, out;
  int position = 0;
  double sigma = 0.0, L = 0.0, eps = 0.0, delta = 0.0;  // δ is 0 for L1 (Laplace) models
  double sensitivity_bound = 0.0, sensitivity = 0.0;
  std::int64_t epochs = 0, steps = 0, train_examples = 0;
  double train_loss = 0.0, train_accuracy = 0.0, train_seconds = 0.0;
  double test_accuracy_one_draw = 0.0;  // one noise draw per test example: a check, not the certified prediction
};
nlohmann::json to_json(const PixelDpTrainReport& report);

// Builds, trains (progress: one phase per epoch) and writes the network. InvalidArgument for
// parameters out of range.
PixelDpTrainReport run_pixeldp_training(const PixelDpTrainJob& job, const nn::DatasetSplit& split,
                                        ProgressSink* progress = nullptr);

struct PixelDpCertifyJob {
  std::string model_file;
  std::string dataset;   // the dataset spec (nn::load_dataset)
  std::string data_dir;  // its search hint
  PixelDpRunOptions options;
  std::int64_t max = 0;    // the first N test examples (0: all)
  std::uint64_t seed = 0;  // of the certification noise
  Device device = Device::cpu();
};

struct PixelDpCertifyReport {
  std::string model_file, model, dataset, norm, kind, bound, device;
  std::int64_t examples = 0, draws = 0;
  int position = 0;
  double sigma = 0.0, L = 0.0, eps = 0.0, delta = 0.0, sensitivity = 0.0, confidence = 0.0;
  // The Gaussian mechanism's ε ≤ 1 caps every robustness size; Laplace has no cap (unset).
  std::optional<double> max_robustness_size;
  std::vector<double> thresholds;
  PixelDpRun run;  // conventional and certified accuracy, robustness sizes, the attack's result
  // The attack's settings when it ran.
  std::int64_t attack_draws = 0;
  int attack_steps = 0, attack_binary_search_steps = 0;
  float attack_confidence = 0.0f;
  double seconds = 0.0;
};
nlohmann::json to_json(const PixelDpCertifyReport& report);

// Loads job.model_file, then the dataset, checks that the model fits it, certifies the first
// job.max test examples (and attacks them when options.attack is set: L2 models only,
// InvalidArgument otherwise).
PixelDpCertifyReport run_pixeldp_certify_file(const PixelDpCertifyJob& job, ProgressSink* progress = nullptr);

}  // namespace aegis::certify
