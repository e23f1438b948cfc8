// Supervised training and evaluation of classifiers: the loop behind `aegis train`, `aegis eval`
// and `aegis demo`, usable from C++ as it is. One step = forward on a minibatch, mean softmax
// cross-entropy, backward, optimizer update with the schedule's learning rate for that step.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nn/data/augment.h"
#include "nn/data/dataset.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "nn/schedule.h"

namespace aegis::nn {

struct EpochResult;

struct TrainOptions {
  std::int64_t epochs = 5;
  std::int64_t batch_size = 128;
  float lr = 0.1f;
  OptimizerKind optimizer = OptimizerKind::Sgd;  // nn/optim.h
  float momentum = 0.0f;              // sgd only
  ScheduleKind schedule = ScheduleKind::Constant;  // nn/schedule.h
  std::uint64_t seed = 0;             // data order and augmentation noise
  Device device = Device::cpu();
  // Gaussian data augmentation for randomized smoothing (Cohen et al. 2019, §4: the base classifier
  // is trained on x + ε, ε ~ N(0, σ²I), in [0, 1] pixel space, unclipped); 0 = off. The noise of
  // step t is Philox (seed, kPurposeAugmentNoise, t).
  float noise_sigma = 0.0f;
  // Random crops and horizontal flips of every training image (nn/data/augment.h), before the
  // noise. Step t's row r is keyed by Philox (seed, kPurposeAugmentGeometry, t) at r; under DP-SGD
  // (privacy/dp_train.h) by (dataset index, copy) instead.
  ImageAugment augment;
  // Called after every optimizer step, before the step is reported: a projection of the weights
  // onto a constraint set (PixelDP's sensitivity bound, certify/pixeldp.h), for instance.
  std::function<void()> after_step;
  // Hooks for loops built on this one (adversarial training, attacks/adv_train.h):
  // the network input of optimizer step `step` (counted from 0) for a minibatch; unset: the
  // batch's images, plus the augmentation noise above. The Var may require a gradient.
  std::function<autograd::Var(const Batch& batch, std::int64_t step)> make_input;
  // Called after the backward pass and before the optimizer step, with the step's input.
  std::function<void(const autograd::Var& input)> after_backward;
  // Optimizer steps per minibatch (free adversarial training replays each one); ≥ 1.
  int replays = 1;
  // Called after each epoch, before on_epoch; returning true ends training after that epoch.
  std::function<bool(const EpochResult&)> stop_after_epoch;
};

struct StepInfo {
  std::int64_t epoch = 0, step = 0, total_steps = 0;
  std::int64_t examples = 0;  // examples processed so far
  double loss = 0.0;          // this batch's mean loss
  float lr = 0.0f;
};

struct EpochResult {
  std::int64_t epoch = 0;
  double train_loss = 0.0;      // mean over the epoch's examples
  double train_accuracy = 0.0;  // fraction, measured on the fly during the epoch
  double seconds = 0.0;
};

struct TrainResult {
  std::vector<EpochResult> epochs;
  std::int64_t steps = 0;
  double seconds = 0.0;
};

// Throws InvalidArgument naming the first option out of range: epochs, batch size and replays
// must be ≥ 1, the learning rate positive and finite, the noise σ ≥ 0 and finite, momentum in
// [0, 1). Every loop built on train_classifier checks its options with it before deriving counts
// (steps per epoch, ...) from them.
void check_train_options(const TrainOptions& options);
// ⌈examples / batch_size⌉ × epochs × replays optimizer steps, or InvalidArgument when the product
// does not fit in 64 bits.
std::int64_t total_train_steps(std::int64_t examples, const TrainOptions& options);

// Trains `model` in place (moving it to options.device): epochs × batches × replays optimizer
// steps. Throws InvalidArgument for bad options and NumericError when the loss becomes NaN/Inf (the model is left as it
// was after the last finite step).
TrainResult train_classifier(Module& model, const Dataset& train, const TrainOptions& options,
                             const std::function<void(const StepInfo&)>& on_step = {},
                             const std::function<void(const EpochResult&)>& on_epoch = {});

struct EvalResult {
  double loss = 0.0;      // mean cross-entropy
  double accuracy = 0.0;  // fraction correct
  std::int64_t correct = 0, total = 0;
  double seconds = 0.0;
};

// Evaluates without a tape, in evaluation mode (nn::FrozenScope: both restored afterwards).
EvalResult evaluate(Module& model, const Dataset& data, Device device, std::int64_t batch_size = 1000,
                    const std::function<void(std::int64_t done, std::int64_t total)>& on_batch = {});

}  // namespace aegis::nn
