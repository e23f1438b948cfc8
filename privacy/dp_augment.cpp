#include "privacy/dp_augment.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/philox.h"
#include "kernels/augment.h"
#include "privacy/sampling.h"
#include "runtime/dispatch.h"

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

// Crops, flips and noise of every copy in one pass (kernels/augment.h); padding rows (past
// indices.size()·K) are transformed too, under keys no real row uses, and stay masked out.
Tensor augment_copies(const Tensor& images, const std::vector<std::int64_t>& indices, const AugmentOptions& o,
                      std::uint64_t step) {
  const std::int64_t rows = images.size(0), k = o.copies;
  kernels::AugmentGeometry g;
  g.rows = rows;
  if (o.image.any()) {
    AEGIS_CHECK_AS(ShapeError, images.dim() == 4 || images.dim() == 3,
                   "augmentation: crops and flips need images [N, C, H, W], got " << shape_str(images.shape()));
    g.channels = images.dim() == 4 ? images.size(1) : 1;
    g.height = images.size(images.dim() - 2);
    g.width = images.size(images.dim() - 1);
  } else {  // noise only: any shape, one row of d elements per copy
    g.channels = g.height = 1;
    g.width = rows > 0 ? images.numel() / rows : 0;
  }
  g.pad = o.image.crop_pad;
  g.flip = o.image.flip;
  g.mirror = !o.image.zero_pad;
  g.noise_sigma = o.noise_sigma;
  AEGIS_CHECK(!g.mirror || (g.pad <= g.height && g.pad <= g.width),
              "augmentation: mirror padding of " << g.pad << " pixels needs images at least that large, got "
                                                 << g.height << "x" << g.width << " (use crop:PAD:zero or a smaller PAD)");
  std::vector<std::uint64_t> keys(static_cast<std::size_t>(rows));
  const auto real = static_cast<std::int64_t>(indices.size());
  for (std::int64_t j = 0; j < rows / k; ++j)
    for (std::int64_t c = 0; c < k; ++c)
      keys[static_cast<std::size_t>(j * k + c)] =
          j < real ? augment_row_key(indices[static_cast<std::size_t>(j)], c) : ~static_cast<std::uint64_t>(j * k + c);
  const Device dev = images.device();
  Tensor d_keys = Tensor::empty({rows}, DType::I64, Device::cpu());
  std::copy(keys.begin(), keys.end(), reinterpret_cast<std::uint64_t*>(d_keys.data<std::int64_t>()));
  d_keys = d_keys.to(dev);
  Tensor y = Tensor::empty_like(images);
  const auto* d_row_keys = reinterpret_cast<const std::uint64_t*>(d_keys.data<std::int64_t>());
  AEGIS_DISPATCH(dev, augment_rows(g, images.data<float>(), d_row_keys,
                                   philox::step_key(o.seed, philox::kPurposeDpAugmentGeometry, step),
                                   philox::step_key(o.seed, philox::kPurposeDpAugment, step), y.data<float>()));
  return y;
}

constexpr std::int64_t kDefaultCropPad = 4;  // De et al. 2022, §3.1 (CIFAR-10)

std::int64_t parse_pad(const std::string& text, const std::string& part) {
  std::size_t used = 0;
  long long v = -1;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  AEGIS_CHECK(used == text.size() && v >= 1 && v <= 64,
              "augmentation '" << part << "': the crop padding must be an integer in [1, 64], got '" << text << "'");
  return v;
}

}  // namespace

ImageAugment parse_image_augment(const std::string& spec) {
  ImageAugment a;
  if (spec.empty() || spec == "none") return a;
  std::size_t begin = 0;
  bool seen_flip = false, seen_crop = false;
  while (begin <= spec.size()) {
    const std::size_t end = std::min(spec.find(',', begin), spec.size());
    const std::string part = spec.substr(begin, end - begin);
    begin = end + 1;
    if (part == "flip") {
      AEGIS_CHECK(!seen_flip, "augmentation '" << spec << "' names flip twice");
      seen_flip = a.flip = true;
    } else if (part == "crop" || part.rfind("crop:", 0) == 0) {
      AEGIS_CHECK(!seen_crop, "augmentation '" << spec << "' names crop twice");
      seen_crop = true;
      a.crop_pad = kDefaultCropPad;
      if (part.size() > 4) {
        std::string rest = part.substr(5);
        const std::size_t colon = rest.find(':');
        if (colon != std::string::npos) {
          const std::string mode = rest.substr(colon + 1);
          AEGIS_CHECK(mode == "zero" || mode == "mirror",
                      "augmentation '" << part << "': padding mode '" << mode << "' is not zero or mirror");
          a.zero_pad = mode == "zero";
          rest = rest.substr(0, colon);
        }
        a.crop_pad = parse_pad(rest, part);
      }
    } else {
      AEGIS_THROW(InvalidArgument, "augmentation '" << part << "' in '" << spec
                                                    << "' is not one of flip, crop, crop:PAD, crop:PAD:zero|mirror");
    }
    if (end == spec.size()) break;
  }
  return a;
}

std::string image_augment_name(const ImageAugment& a) {
  std::string s;
  if (a.flip) s = "flip";
  if (a.crop_pad > 0)
    s += (s.empty() ? "" : ",") + std::string("crop:") + std::to_string(a.crop_pad) + (a.zero_pad ? ":zero" : "");
  return s.empty() ? "none" : s;
}

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

}  // namespace aegis::privacy
