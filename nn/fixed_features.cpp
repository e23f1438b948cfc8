#include "nn/fixed_features.h"

#include <algorithm>
#include <string>
#include <utility>

namespace aegis::nn {
namespace {

// The layers after the fixed prefix, registered under the names they have in the whole model
// ("3.weight" stays "3.weight"), so checkpoints and per-layer options see the same parameters;
// Sequential's forward applies them in order.
class SequentialRest : public Sequential {
 public:
  explicit SequentialRest(const std::vector<std::pair<std::string, ModulePtr>>& layers) {
    for (const auto& [name, layer] : layers) register_module(name, layer);
  }
};

}  // namespace

FixedSplit split_fixed_prefix(Module& model) {
  FixedSplit split;
  if (dynamic_cast<Sequential*>(&model) == nullptr) return split;
  const auto& children = model.children();
  std::size_t k = 0;
  while (k < children.size() && children[k].second->fixed_feature()) ++k;
  if (k == 0 || k == children.size()) return split;
  for (std::size_t i = 0; i < k; ++i) split.prefix.push_back(children[i].second);
  split.rest = std::make_shared<SequentialRest>(std::vector<std::pair<std::string, ModulePtr>>(
      children.begin() + static_cast<std::ptrdiff_t>(k), children.end()));
  return split;
}

Dataset fixed_features(const std::vector<ModulePtr>& prefix, const Dataset& data, Device device, std::int64_t chunk) {
  Dataset out;
  out.name = data.name;
  out.labels = data.labels;
  out.num_classes = data.num_classes;
  const std::int64_t n = data.size();
  if (n == 0) return out;
  const auto apply = [&](const Tensor& images) {
    Var h(images.to(device), false);
    for (const auto& layer : prefix) h = layer->forward(h);
    return h.value().to(Device::cpu());
  };
  for (std::int64_t begin = 0; begin < n; begin += chunk) {
    const std::int64_t end = std::min(n, begin + chunk);
    const Tensor part = apply(data.images.rows(begin, end));
    if (!out.images.defined()) {
      Shape shape = part.shape();
      shape[0] = n;
      out.images = Tensor::empty(shape, DType::F32, Device::cpu());
    }
    out.images.rows(begin, end).copy_from(part);
  }
  return out;
}

}  // namespace aegis::nn
