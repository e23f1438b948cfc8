// Shared by `aegis train` and `aegis demo`: the training arguments and the run itself
// (standard, DP-SGD or adversarial), ending in a test-set evaluation, a model file and a JSON summary.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "attacks/adv_train.h"
#include "commands.h"
#include "nn/data/dataset.h"
#include "nn/train.h"
#include "privacy/dp_train.h"

namespace aegis::app {

struct TrainArgs {
  CommonOptions common;
  std::string data = "fashion-mnist";
  std::string model = "cnn-fmnist";
  std::string activation;
  std::string out = "model.safetensors";
  std::string init;  // `--init`: a model file (.onnx or aegis) to fine-tune instead of a fresh --model
  nn::TrainOptions train = default_train_options();
  // DP-SGD (`--dp`).
  bool dp = false;
  privacy::DpTrainOptions dp_options;
  std::string resume;                    // a DP model file whose weights and ledger the run continues
  bool trust_unverified_ledger = false;  // resume from a ledger without a digest (older files)
  // DP-CERT's consistency regularizer (`--consistency LAMBDA [--consistency-entropy ETA]`): set
  // into dp_options.consistency by run_training once the combination is checked.
  std::optional<float> consistency;
  float consistency_eta = privacy::ConsistencyOptions{}.eta;
  // Adversarial training (`--adv pgd|fgsm-rs|free --eps E`); empty: none. With --dp: pgd or
  // fgsm-rs examples of each sampled example (attacks::dp_adversarial_inputs).
  std::string adv;
  attacks::AdvTrainOptions adv_options;

  // Measured on Fashion-MNIST with cnn-fmnist: 89.2% test accuracy after 5 epochs.
  static nn::TrainOptions default_train_options() {
    nn::TrainOptions t;
    t.epochs = 5;
    t.batch_size = 64;
    t.lr = 0.002f;
    t.optimizer = nn::OptimizerKind::Adam;
    t.schedule = nn::ScheduleKind::Cosine;
    return t;
  }
};

void add_train_options(CLI::App* cmd, TrainArgs& a);
void add_dp_options(CLI::App* cmd, TrainArgs& a);
// The DP options of every command that trains with DP-SGD: --noise-multiplier or --target-epsilon,
// --delta, --max-grad-norm, --sampling-rate, --accountant.
void add_dp_noise_options(CLI::App* cmd, privacy::DpTrainOptions& d);
// Trains (standard or DP), evaluates on the test split, writes a.out; returns the JSON summary.
nlohmann::json run_training(const TrainArgs& a, const nn::DatasetSplit& split, const std::string& data_label);
// The text form of a training report (run_training's JSON), for print_result.
void print_training_text(const nlohmann::json& j);

}  // namespace aegis::app
