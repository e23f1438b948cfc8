// The layers per-example clipping works on, shared by the norms (privacy/per_example.cpp) and
// the clipping itself (privacy/clip.cpp). Internal to privacy/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/module.h"
#include "privacy/per_example.h"

namespace aegis::privacy::detail {

// A layer with parameters that require a gradient and a per-example capture.
struct Layer {
  std::string name;
  nn::Module* module;
  nn::LayerCapture* capture;
};

// Everything one layer contributes: its per-example squared norms and what its clipped sums are
// formed from. Per-example bias / GroupNorm gradients are small ([N, O] or [N, C]) and always kept;
// materialized conv weight gradients are kept when they fit the budget.
struct LayerGrads {
  const Layer* layer = nullptr;
  bool ghost = false;
  Tensor per_example_weight;  // [N, ...] or undefined
  Tensor per_example_bias;    // [N, O] / [N, C] or undefined
};

// Adds the layer's per-example squared norms into sq_norms [N]. keep_bytes is what is left of
// the budget for stored per-example gradients; a layer that stores its own takes from it.
LayerGrads layer_norms(const Layer& layer, NormMethod method, std::size_t& keep_bytes, Tensor& sq_norms);
// The same when each example is `group` consecutive rows of the captures (ClipOptions::group_size
// > 1; privacy/per_example_group.cpp): the per-example gradients are always formed and kept.
LayerGrads layer_norms_grouped(const Layer& layer, std::int64_t group, Tensor& sq_norms);
// Adds Σ_i factors_i·grad_i of the layer into its parameters' gradients.
void accumulate_clipped_sum(const LayerGrads& r, const Tensor& factors);
// The clipped layers with a capture from this backward pass, checked for one batch size.
std::vector<Layer> captured_layers(nn::Module& model, std::int64_t& batch);
Device capture_device(const std::vector<Layer>& layers);
// Drops every layer's captures.
void clear_all(nn::Module& m) noexcept;

// Drops the captures when clip_and_accumulate leaves, normally or by an exception.
class ClearOnExit {
 public:
  explicit ClearOnExit(nn::Module& m) : m_model(m) {}
  ~ClearOnExit() { clear_all(m_model); }
  ClearOnExit(const ClearOnExit&) = delete;
  ClearOnExit& operator=(const ClearOnExit&) = delete;

 private:
  nn::Module& m_model;
};

}  // namespace aegis::privacy::detail
