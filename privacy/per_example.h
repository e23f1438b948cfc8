// Per-example gradient clipping for DP-SGD (Abadi et al. 2016, Alg. 1) by book-keeping: one
// backward pass, no per-example backward passes and no second backward pass.
//
// The backward pass runs with every layer's capture enabled and its parameter gradients
// skipped (enable_per_example_capture): each layer with parameters (Linear, Conv2d, GroupNorm
// affine) keeps its input activation a and output gradient g, and still passes the input
// gradient on. The loss must be a SUM over examples (nn::Reduction::Sum), so that row i of every
// captured g is the gradient of example i's own loss. clip_and_accumulate then
//   1. adds every layer's per-example squared gradient norms into one buffer [N], by the ghost
//      norm (Gram matrices) or by materializing the per-example gradients, per layer
//      (kernels/per_example.h gives the formulas);
//   2. forms the clip factors c_i = min(1, C/(‖g_i‖ + 1e-6)) (zero for masked-out rows);
//   3. forms each parameter's clipped sum Σ_i c_i·grad_i with one more product from the saved
//      (a, g) — the "book-keeping" of Bu, Wang, Zha, Karypis 2023, "Differentially private
//      optimization on large model at small cost" — and adds it to the parameter's grad, where
//      the noise step and the optimizer find it.
// The noise is not added here. Every example's clipped gradient has L2 norm ≤ C, so adding or
// removing one example changes the sum by at most C (the sensitivity the noise is scaled to).
//
// Per-layer clipping (McMahan et al. 2018, "A general approach to adding differential privacy to
// iterative training procedures") clips each layer l separately to C_l with
// c_{l,i} = min(1, C_l/(‖g_{l,i}‖ + 1e-6)); the whole per-example gradient then has norm at most
// sqrt(Σ_l C_l²), and that is the sensitivity to calibrate the noise to.
//
// Layers are the modules whose capture() is not null and that have a parameter requiring a
// gradient, in pre-order (the order of named_parameters()); per_example_layer_names lists them.
// A layer must be applied once per forward pass. All work runs on the device the captures are on;
// clip_and_accumulate reads the norms back to the host once per call (for ClipStats::clipped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/module.h"
#include "runtime/tensor.h"

namespace aegis::privacy {

// How a Conv2d layer's per-example norms are formed (T = H'·W' output positions, d = C·kh·kw,
// p = output channels). Auto materializes the per-example gradients while they fit
// ClipOptions::keep_per_example_bytes (layers in order, until the budget is spent): one T·d·p
// product per example then gives both the norm and, kept, the clipped sum, where a ghost norm
// costs T²(d+p) and the clipped sum still needs a T·d·p filter-gradient product. Beyond the
// budget it follows the "mixed" rule of Bu, Mao, Xu 2022 ("Scalable and efficient training of
// large convolutional neural networks with differential privacy", NeurIPS 2022), as used in
// Bu et al. 2023: ghost norm when 2T² < d·p, else materialize (and recompute the clipped sum).
// Linear layers take one position per example, where both are the same exact formula
// ‖a_i‖²·‖g_i‖²; GroupNorm gradients are always materialized ([N, C], small).
enum class NormMethod { Auto, Ghost, Materialize };

struct ClipOptions {
  float max_grad_norm = 1.0f;  // C, flat clipping
  NormMethod method = NormMethod::Auto;
  bool per_layer = false;
  // One C_l per layer (per_example_layer_names order). Empty with per_layer: C/√L for each of the
  // L layers, so that the overall bound stays max_grad_norm.
  std::vector<float> per_layer_norms;
  // Memory for materialized per-example conv gradients [N, O, C·kh·kw], all layers of one step
  // together: a layer whose gradients still fit keeps them, and its clipped sum is a weighted row
  // sum; other layers recompute it as the filter gradient of the scaled output gradient. A layer
  // keeps its buffer (sized for the largest batch seen, plus a quarter) from step to step until
  // enable_per_example_capture is called again.
  // The default, 16 MiB: at batch 1024, cnn-fmnist's first conv layer (4 MiB) keeps its gradients
  // and the second (32 MiB) does not, for a DP step of 1.10x the non-private one in time and 1.03x
  // in peak memory (with 256 MiB both are kept: 1.02x and 1.29x; bench/RESULTS.md).
  std::size_t keep_per_example_bytes = std::size_t{16} << 20;
  // Augmentation multiplicity (De et al. 2022, §3.1): the captured batch holds group_size
  // consecutive rows per example (its augmented copies), and an example's gradient is the SUM of
  // its rows' gradients (weight each copy's loss by 1/group_size for their average). That sum is
  // what is clipped, so one example still moves the clipped sum by at most C. The norms, factors
  // and example_mask are then per example ([rows / group_size]). With group_size > 1 every
  // layer's per-example gradients are formed explicitly (privacy/per_example_group.cpp) and
  // `method` and keep_per_example_bytes do not apply.
  std::int64_t group_size = 1;
};

struct ClipStats {
  Tensor per_example_norms;               // f32 [N]: ‖g_i‖ over all layers, before clipping
  Tensor clip_factors;                    // f32 [N] (flat clipping): c_i, 0 for masked-out rows
  std::vector<Tensor> per_layer_norms;    // per_layer only: f32 [N] per layer, before clipping
  std::vector<Tensor> per_layer_factors;  // per_layer only: f32 [N] per layer
  // Unmasked examples that were clipped: norm > C (flat), or some layer norm > C_l (per layer),
  // and the unmasked examples that were not (adaptive clipping counts these).
  std::int64_t clipped = 0;
  std::int64_t unclipped = 0;
};

// Turns capture on (with parameter gradients skipped) or off in every layer of the model, and
// drops anything already captured, including the per-example gradient memory that layers keep
// between steps (see ClipOptions::keep_per_example_bytes).
void enable_per_example_capture(nn::Module& model, bool on);
// Drops the captured tensors of every layer (clip_and_accumulate does this when it is done).
void clear_captures(nn::Module& model);
// Dotted names of the clipped layers ("0", "layer1.0.conv1"), in per-layer-clipping order.
std::vector<std::string> per_example_layer_names(nn::Module& model);

// Call after autograd::backward of a summed loss, with enable_per_example_capture(model, true).
// Adds Σ_i c_i·grad_i to every parameter's gradient, returns the norms and factors, and clears the
// captures. example_mask (f32 [N] of 0/1 on the captures' device, or null) gives masked-out rows
// (padding of a fixed-capacity batch) c_i = 0: they contribute nothing. Throws InvalidArgument
// when a parameter requiring a gradient has no capture (it could not be clipped), and
// NumericError when an unmasked example's norm is NaN or Inf.
ClipStats clip_and_accumulate(nn::Module& model, const ClipOptions& opt, const Tensor* example_mask = nullptr);

// The per-example squared gradient norms [N] (all layers) or one [N] per layer, from the current
// captures, which stay in place. Capture must have been on during backward; parameter gradients
// may or may not have been skipped. For tests and tools.
Tensor per_example_sq_norms(nn::Module& model, NormMethod method = NormMethod::Auto);
std::vector<Tensor> per_layer_sq_norms(nn::Module& model, NormMethod method = NormMethod::Auto);

// Adds extra[k] to the gradient of parameter k (named_parameters() order) — e.g. a canary
// gradient for privacy auditing, treated as one more example of the clipped sum. extra must
// have one entry per parameter, each undefined (nothing added) or of the parameter's shape and
// device. With clip_to > 0 the extras are first scaled, together, to L2 norm ≤ clip_to (the
// factor min(1, clip_to/(‖extra‖ + 1e-6)) of clip_and_accumulate). Returns ‖extra‖ before scaling.
double add_to_clipped_sum(nn::Module& model, const std::vector<Tensor>& extra, float clip_to = 0.0f);

}  // namespace aegis::privacy
