#include "privacy/audit_mia_query.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "runtime/autograd.h"

namespace aegis::privacy::audit_detail {

nn::Dataset subset(const nn::Dataset& data, const std::vector<std::int64_t>& indices, const std::string& name) {
  const Shape& s = data.images.shape();
  const std::int64_t per = s[1] * s[2] * s[3];
  const std::vector<float> images = data.images.to_vector<float>();
  const std::vector<std::int32_t> labels = data.labels.to_vector<std::int32_t>();
  std::vector<float> out_images;
  std::vector<std::int32_t> out_labels;
  out_images.reserve(indices.size() * static_cast<std::size_t>(per));
  for (std::int64_t i : indices) {
    out_images.insert(out_images.end(), images.begin() + i * per, images.begin() + (i + 1) * per);
    out_labels.push_back(labels[static_cast<std::size_t>(i)]);
  }
  nn::Dataset d;
  d.name = name;
  const auto n = static_cast<std::int64_t>(indices.size());
  d.images = Tensor::from_vector(out_images, {n, s[1], s[2], s[3]});
  d.labels = Tensor::from_vector(out_labels, {n});
  d.num_classes = data.num_classes;
  return d;
}

std::vector<float> logits_of(nn::Module& model, const nn::Dataset& data, Device device) {
  model.to(device);
  nn::FrozenScope frozen(model);
  nn::BatchOptions bo;
  bo.batch_size = 1000;
  bo.device = device;
  nn::BatchIterator batches(data, bo, 0);
  std::vector<float> out;
  nn::Batch batch;
  while (batches.next(batch)) {
    const std::vector<float> z =
        model.forward(autograd::Var(batch.images, false)).value().to(Device::cpu()).to_vector<float>();
    out.insert(out.end(), z.begin(), z.end());
  }
  return out;
}

void phi_and_loss(const std::vector<float>& logits, const std::vector<std::int32_t>& labels, std::int64_t classes,
                  std::vector<double>& phi, std::vector<double>& loss, std::vector<bool>& correct) {
  phi.assign(labels.size(), 0.0);
  loss.assign(labels.size(), 0.0);
  correct.assign(labels.size(), false);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const float* z = logits.data() + i * static_cast<std::size_t>(classes);
    const auto y = static_cast<std::size_t>(labels[i]);
    double top_other = -INFINITY, top = -INFINITY;
    for (std::int64_t c = 0; c < classes; ++c) {
      top = std::max(top, static_cast<double>(z[c]));
      if (static_cast<std::size_t>(c) != y) top_other = std::max(top_other, static_cast<double>(z[c]));
    }
    double sum_other = 0.0, sum_all = 0.0;
    for (std::int64_t c = 0; c < classes; ++c) {
      sum_all += std::exp(static_cast<double>(z[c]) - top);
      if (static_cast<std::size_t>(c) != y) sum_other += std::exp(static_cast<double>(z[c]) - top_other);
    }
    phi[i] = static_cast<double>(z[y]) - (top_other + std::log(sum_other));
    loss[i] = top + std::log(sum_all) - static_cast<double>(z[y]);
    correct[i] = static_cast<double>(z[y]) > top_other;
  }
}

nn::Dataset augmented_view(const nn::Dataset& data, std::int64_t view) {
  AEGIS_CHECK(view >= 0 && view < kMaxQueries, "augmented view " << view << " must lie in [0, " << kMaxQueries << ")");
  if (view == 0) return data;
  const Shape& s = data.images.shape();
  const std::int64_t n = s[0], channels = s[1], h = s[2], w = s[3];
  AEGIS_CHECK(h >= 2 && w >= 2,
              "--augment needs image inputs (height and width at least 2), " << data.name << " has " << h << "x" << w);
  static constexpr int kShifts[9][2] = {{0, 0}, {1, 0}, {-1, 0}, {0, 1}, {0, -1}, {1, 1}, {-1, -1}, {1, -1}, {-1, 1}};
  const bool mirror = view >= 9;
  const int dx = kShifts[view % 9][0], dy = kShifts[view % 9][1];
  const std::vector<float> in = data.images.to(Device::cpu()).to_vector<float>();
  std::vector<float> out(in.size());
  for (std::int64_t plane = 0; plane < n * channels; ++plane) {
    const float* src = in.data() + plane * h * w;
    float* dst = out.data() + plane * h * w;
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x) {
        // Output pixel (x, y) shows the (mirrored) input at (x − dx, y − dy), clamped to the image.
        const std::int64_t sy = std::clamp<std::int64_t>(y - dy, 0, h - 1);
        std::int64_t sx = std::clamp<std::int64_t>(x - dx, 0, w - 1);
        if (mirror) sx = w - 1 - sx;
        dst[y * w + x] = src[sy * w + sx];
      }
  }
  nn::Dataset d;
  d.name = data.name + " view " + std::to_string(view);
  d.images = Tensor::from_vector(out, s);
  d.labels = data.labels;
  d.num_classes = data.num_classes;
  return d;
}

}  // namespace aegis::privacy::audit_detail
