#include "privacy/dp_augment.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/philox.h"
#include "privacy/sampling.h"

namespace aegis::privacy {

namespace {

// Turns every layer's capture off while the input hook runs its own forward and backward passes
// (an attack's), and back on after, keeping the per-example scratch the layers hold.
class PausedCapture {
 public:
  explicit PausedCapture(nn::Module& model) : m_model(model) { walk(m_model, false); }
  ~PausedCapture() { walk(m_model, true); }
  PausedCapture(const PausedCapture&) = delete;
  PausedCapture& operator=(const PausedCapture&) = delete;

 private:
  void walk(nn::Module& m, bool restore) {
    if (nn::LayerCapture* c = m.capture()) {
      if (restore) {
        c->enabled = m_enabled[m_next];
        c->skip_param_grads = m_skip[m_next++];
      } else {
        m_enabled.push_back(c->enabled);
        m_skip.push_back(c->skip_param_grads);
        c->enabled = false;
        c->skip_param_grads = false;
      }
    }
    for (const auto& [name, child] : m.children()) walk(*child, restore);
  }
  nn::Module& m_model;
  std::vector<bool> m_enabled, m_skip;
  std::size_t m_next = 0;
};

// Crops, flips and noise of every copy in one pass (nn/data/augment.h); padding rows (past
// indices.size()·K) are transformed too, under keys no real row uses, and stay masked out.
Tensor augment_copies(const Tensor& images, const std::vector<std::int64_t>& indices, const AugmentOptions& o,
                      std::uint64_t step) {
  const std::int64_t rows = images.size(0), k = o.copies;
  std::vector<std::uint64_t> keys(static_cast<std::size_t>(rows));
  const auto real = static_cast<std::int64_t>(indices.size());
  for (std::int64_t j = 0; j < rows / k; ++j)
    for (std::int64_t c = 0; c < k; ++c)
      keys[static_cast<std::size_t>(j * k + c)] =
          j < real ? augment_row_key(indices[static_cast<std::size_t>(j)], c) : ~static_cast<std::uint64_t>(j * k + c);
  return nn::augment_images(images, o.image, o.noise_sigma, keys,
                            philox::step_key(o.seed, philox::kPurposeDpAugmentGeometry, step),
                            philox::step_key(o.seed, philox::kPurposeDpAugment, step));
}

}  // namespace

AugmentedBatch augmented_batch(nn::Module& model, const nn::Dataset& dataset, const std::vector<std::int64_t>& indices,
                               std::int64_t capacity, const AugmentOptions& o, std::uint64_t step, Device device,
                               std::int64_t first_example) {
  AEGIS_CHECK(o.copies >= 1 && o.copies <= kMaxAugmentCopies,
              "augmentation multiplicity " << o.copies << " must be in [1, " << kMaxAugmentCopies << "]");
  AEGIS_CHECK(std::isfinite(o.noise_sigma) && o.noise_sigma >= 0.0f,
              "augmentation noise sigma " << o.noise_sigma << " must be non-negative and finite");
  const std::int64_t k = o.copies;
  std::vector<std::int64_t> repeated;
  repeated.reserve(indices.size() * static_cast<std::size_t>(k));
  for (std::int64_t i : indices)
    for (std::int64_t c = 0; c < k; ++c) repeated.push_back(i);
  MaskedBatch b = gather_masked(dataset, repeated, capacity * k, device);
  AugmentedBatch out;
  out.examples = static_cast<std::int64_t>(indices.size());
  out.labels = b.labels;
  std::vector<float> weights(static_cast<std::size_t>(capacity * k), 0.0f);
  std::vector<float> mask(static_cast<std::size_t>(capacity), 0.0f);
  for (std::int64_t j = 0; j < out.examples; ++j) {
    mask[static_cast<std::size_t>(j)] = 1.0f;
    for (std::int64_t c = 0; c < k; ++c) weights[static_cast<std::size_t>(j * k + c)] = 1.0f / static_cast<float>(k);
  }
  out.loss_weights = Tensor::from_vector(weights, {capacity * k}).to(device);
  out.example_mask = Tensor::from_vector(mask, {capacity}).to(device);
  Tensor images = b.images;
  if (o.noise_sigma > 0.0f || o.image.any()) images = augment_copies(images, indices, o, step);
  if (o.make_input) {
    const PausedCapture paused(model);
    Tensor made = o.make_input(model, images, b.labels, step, first_example * k);
    AEGIS_CHECK_AS(
        ShapeError, made.defined() && made.shape() == images.shape() && made.device() == images.device(),
        "DP-SGD input hook: returned a tensor of another shape or device than its batch " << shape_str(images.shape()));
    images = std::move(made);
  }
  out.images = images;
  return out;
}

nn::Var augmented_batch_loss(const nn::Var& logits, const AugmentedBatch& batch, std::int64_t copies,
                             const std::optional<ConsistencyOptions>& consistency) {
  const std::int64_t rows = batch.labels.numel();
  const nn::Var loss = nn::F::cross_entropy(logits, batch.labels, nn::Reduction::None);
  nn::Var total =
      nn::F::linear(nn::F::reshape(loss, {1, rows}), nn::Var(batch.loss_weights.reshape({1, -1}), false), nn::Var());
  if (!consistency) return total;
  const nn::Var reg = nn::F::consistency_regularizer(logits, copies, consistency->lambda, consistency->eta);
  return nn::F::add(total, nn::F::linear(nn::F::reshape(reg, {1, batch.example_mask.numel()}),
                                         nn::Var(batch.example_mask.reshape({1, -1}), false), nn::Var()));
}

}  // namespace aegis::privacy
