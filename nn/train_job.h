// A training run from start to model file, as the command-line tool (`aegis train`, `aegis demo`)
// and the Python package start one: build the zoo model for the data, train it, evaluate it on
// the test split, write the model file, and report. The loop is each kind's own: standard
// training (with Gaussian augmentation) here, DP-SGD in privacy/dp_job.h, adversarial training in
// attacks/adv_job.h; they share the model set-up, the epoch progress, the evaluation and the file
// through this header. The reports' fields are named as `aegis train --json` names its keys.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "core/progress.h"
#include "nn/data/dataset.h"
#include "nn/module.h"
#include "nn/train.h"
#include "nn/zoo.h"

namespace aegis::nn {

struct TrainJob {
  std::string model = "cnn-fmnist";       // a zoo name (nn::model_names())
  std::string activation;                 // "" = the architecture's default
  TrainOptions train;                     // seed also seeds the initialization; device is where it trains
  std::string out = "model.safetensors";  // the model file written at the end (safetensors, or .onnx)
  std::string dataset;                    // the data's label, recorded in the file and the report
  // A model file to start from instead of a fresh zoo model (`model` and `activation` are then
  // unused): an ONNX file (.onnx, nn/onnx_import.h), which `out` must then name too (.onnx: the
  // source graph with the trained parameters, nn/onnx_export.h), or an aegis classifier file.
  // Its input shape and classes must be the dataset's.
  std::string init;
};

struct TrainReport {
  std::string model, activation, dataset, device, optimizer, schedule, out;
  std::int64_t parameters = 0, epochs = 0, batch_size = 0;
  std::int64_t steps = 0;  // optimizer steps of this run
  float momentum = 0.0f, lr = 0.0f, noise_sigma = 0.0f;
  std::string augment = "none";  // crops and flips (image_augment_name)
  std::uint64_t seed = 0;
  double train_loss = 0.0, train_accuracy = 0.0;  // of the last epoch
  double train_seconds = 0.0, seconds_per_epoch = 0.0;
  double test_loss = 0.0, test_accuracy = 0.0;
};
nlohmann::json to_json(const TrainReport& report);

// The model a run trains and the metadata its file will carry.
struct TrainedModel {
  std::shared_ptr<Module> model;
  ModelSpec spec;
  std::map<std::string, std::string> metadata;
  bool init_has_ledger = false;  // job.init carries a privacy ledger ("aegis.dp.*" entries)
};

// Builds job.model for `train`'s input shape and classes, initialized from job.train.seed, or
// loads job.init. InvalidArgument when the model does not fit the data, when job.out cannot hold
// it (nn::check_classifier_path), or for job.activation with job.init.
TrainedModel start_model(const TrainJob& job, const Dataset& train);
// Announces the run through progress->info: model, parameters, data sizes, epochs, optimizer, `kind`
// (", DP-SGD", ...), device; for an imported graph, which of its parts stay frozen (BatchNorm,
// grouped convolutions).
void announce_training(const TrainJob& job, const TrainedModel& t, const DatasetSplit& split, const std::string& kind,
                       ProgressSink* progress);
// Evaluates t on `test` (one "test" phase), writes job.out with t's metadata plus the dataset
// label and the augmentation σ, and fills the report from the job, the loop's `result` and the
// evaluation.
TrainReport finish_training(const TrainJob& job, TrainedModel& t, const Dataset& test, const TrainResult& result,
                            ProgressSink* progress);

// One progress phase per epoch ("epoch 2/5", in steps), showing an exponential moving average of
// the batch loss (weight 0.05) and an optional suffix ("  eps 0.712").
class EpochProgress {
 public:
  EpochProgress(ProgressSink* progress, std::int64_t epochs, std::int64_t steps_per_epoch);
  void step(std::int64_t epoch, std::int64_t global_step, double loss, const std::string& extra = "");
  void finish(const std::string& text);

 private:
  ProgressSink& m_progress;
  std::int64_t m_epochs, m_steps;
  double m_running = 0.0;
  bool m_open = false;
};

// Standard training (nn::train_classifier; Gaussian augmentation when job.train.noise_sigma > 0).
TrainReport run_training(const TrainJob& job, const DatasetSplit& split, ProgressSink* progress = nullptr);

}  // namespace aegis::nn
