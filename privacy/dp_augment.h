// The batch one DP-SGD step trains on when its examples are transformed first: K augmented copies
// of each sampled example (augmentation multiplicity, De et al. 2022, §3.1), Gaussian noise on
// every copy (training for randomized smoothing under DP, as DP-CERT: Wu et al. 2024, "Augment
// then Smooth: Reconciling Differential Privacy with Certified Robustness"), and an input hook
// (adversarial examples of the current model, attacks::dp_adversarial_inputs). Every
// transformation acts on one example's rows only, so each example's clipped gradient still
// depends on that example alone (and on data-independent randomness): the sensitivity C and the
// accounting stay those of plain DP-SGD. The noise added to inputs is NOT counted by the
// accountant.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "nn/data/dataset.h"
#include "nn/module.h"
#include "runtime/tensor.h"

namespace aegis::privacy {

// Makes the network input from a batch: (model, images [R, C, H, W], labels i32 [R], step) →
// images of the same shape on the same device. It must treat each row on its own (row r of the
// result may depend on row r of the inputs, the model and data-independent randomness only).
using DpInputFn =
    std::function<Tensor(nn::Module& model, const Tensor& images, const Tensor& labels, std::uint64_t step)>;

struct AugmentedBatch {
  Tensor images;        // f32 [capacity·K, ...]: example j's copies are rows j·K … j·K + K − 1
  Tensor labels;        // i32 [capacity·K]
  Tensor loss_weights;  // f32 [capacity·K]: 1/K for a real example's copy, 0 for padding
  Tensor example_mask;  // f32 [capacity]: 1 for the real examples, 0 for padding
  std::int64_t examples = 0;
};

struct AugmentOptions {
  std::int64_t copies = 1;   // K ≥ 1
  float noise_sigma = 0.0f;  // σ of the Gaussian noise on every copy (0: none)
  DpInputFn make_input;      // applied last, on the noised copies; unset: none
  std::uint64_t seed = 0;
};

// Rows `indices` of the dataset, each K times, in a batch of capacity ≥ indices.size() examples on
// `device`. The noise of step `step` is Philox (seed, kPurposeDpAugment, step) at element
// first_example·K·d + i (d = elements per image), so chunks of one step draw disjoint noise.
// make_input runs with the model's per-example capture paused, so its passes leave no captures.
AugmentedBatch augmented_batch(nn::Module& model, const nn::Dataset& dataset, const std::vector<std::int64_t>& indices,
                               std::int64_t capacity, const AugmentOptions& options, std::uint64_t step,
                               std::uint64_t first_example, Device device);

}  // namespace aegis::privacy
