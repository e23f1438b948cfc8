// The batch one DP-SGD step trains on when its examples are transformed first: K augmented copies
// of each sampled example (augmentation multiplicity, De et al. 2022, §3.1), Gaussian noise on
// every copy (training for randomized smoothing under DP, as DP-CERT: Wu et al. 2024, "Augment
// then Smooth: Reconciling Differential Privacy with Certified Robustness"), and an input hook
// (adversarial examples of the current model, attacks::dp_adversarial_inputs); each copy is
// first a random crop and horizontal flip of its example (De et al. 2022, §3.1) when asked. Every
// transformation acts on one example's rows only, so each example's clipped gradient still
// depends on that example alone (and on data-independent randomness): the sensitivity C and the
// accounting stay those of plain DP-SGD. The noise added to inputs is NOT counted by the
// accountant.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nn/data/augment.h"
#include "nn/data/dataset.h"
#include "nn/functional.h"
#include "nn/module.h"
#include "runtime/tensor.h"

namespace aegis::privacy {

// Makes the network input from a batch: (model, images [R, C, H, W], labels i32 [R], step,
// first_row) → images of the same shape on the same device. It must treat each row on its own (row
// r of the result may depend on row r of the inputs, the model and data-independent randomness
// only). Row r is row first_row + r of the step's whole batch (sample position · K + copy), the
// same in one process and on every rank of an mpirun: its randomness is to be keyed by that.
using DpInputFn = std::function<Tensor(nn::Module& model, const Tensor& images, const Tensor& labels,
                                       std::uint64_t step, std::int64_t first_row)>;

struct AugmentedBatch {
  Tensor images;        // f32 [capacity·K, ...]: example j's copies are rows j·K … j·K + K − 1
  Tensor labels;        // i32 [capacity·K]
  Tensor loss_weights;  // f32 [capacity·K]: 1/K for a real example's copy, 0 for padding
  Tensor example_mask;  // f32 [capacity]: 1 for the real examples, 0 for padding
  std::int64_t examples = 0;
};

// Crops and flips (nn/data/augment.h), named here too for the DP options.
using nn::image_augment_name;
using nn::ImageAugment;
using nn::parse_image_augment;

// Copies of one example that a batch may hold: the copy index is part of a row's random key.
constexpr std::int64_t kMaxAugmentCopies = 1024;

// The random key of copy `copy` of dataset example `index`: its crop, flip and noise are drawn
// from it (with the step's key), so they depend on neither the rest of the sample nor how it is
// split into chunks or over the ranks of an mpirun, and copy c is the same for every K > c.
inline std::uint64_t augment_row_key(std::int64_t index, std::int64_t copy) {
  return static_cast<std::uint64_t>(index) * static_cast<std::uint64_t>(kMaxAugmentCopies) +
         static_cast<std::uint64_t>(copy);
}

struct AugmentOptions {
  std::int64_t copies = 1;   // K in [1, kMaxAugmentCopies]
  float noise_sigma = 0.0f;  // σ of the Gaussian noise on every copy (0: none)
  ImageAugment image;        // crops and flips, applied before the noise
  DpInputFn make_input;      // applied last, on the noised copies; unset: none
  std::uint64_t seed = 0;
};

// DP-CERT's consistency regularizer (Wu et al. 2024, "Augment then Smooth", after Jeong & Shin
// 2020; nn::F::consistency_regularizer): with K noisy copies of example i and p_ik their softmax,
// p̄_i = (1/K) Σ_k p_ik, example i's loss becomes
//   L_i = (1/K) Σ_k CE(f(x_ik), y_i) + lambda · (1/K) Σ_k KL(p̄_i ‖ p_ik) + eta · H(p̄_i).
// L_i depends on example i's copies only, and the step's loss is Σ_i L_i, so the gradient that
// per-example clipping forms for example i (the sum of its K rows' gradients) is ∇L_i itself:
// clipping, sensitivity and accounting are unchanged. eta = 0.5 is Jeong & Shin's default.
struct ConsistencyOptions {
  float lambda = 0.0f;  // weight of the copies' mean KL divergence from their average prediction
  float eta = 0.5f;     // weight of the entropy of the average prediction
};

// The loss whose gradient one backward pass forms for an augmented batch (logits [capacity·K, C]):
//   Σ_r loss_weights_r · CE(logits_r, labels_r)  [+ Σ_i example_mask_i · R_i with the regularizer],
// as [1, 1]. Row r's weight is 1/K, so example i's K rows sum to its copies' average gradient; R_i
// is the consistency regularizer of example i's copies (nn::F::consistency_regularizer). Every term
// belongs to one example, so per-example clipping with group size K clips exactly ∇L_i.
nn::Var augmented_batch_loss(const nn::Var& logits, const AugmentedBatch& batch, std::int64_t copies,
                             const std::optional<ConsistencyOptions>& consistency);

// Rows `indices` of the dataset, each K times, in a batch of capacity ≥ indices.size() examples on
// `device`. Copy c of example i (row key k = augment_row_key(i, c)) is cropped and flipped by the
// Philox block (seed, kPurposeDpAugmentGeometry, step) at k, and noised by Philox (seed,
// kPurposeDpAugment, step) at elements k·d + j (d = elements per image): one pass over the batch
// (kernels/augment.h). make_input runs with the model's per-example capture paused, so its passes
// leave no captures; it is told that the batch starts at example first_example of the step's
// sample (row first_example·K).
AugmentedBatch augmented_batch(nn::Module& model, const nn::Dataset& dataset, const std::vector<std::int64_t>& indices,
                               std::int64_t capacity, const AugmentOptions& options, std::uint64_t step, Device device,
                               std::int64_t first_example = 0);

}  // namespace aegis::privacy
