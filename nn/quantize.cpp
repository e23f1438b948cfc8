// Bit-depth reduction and BPDA (nn/quantize.h).
#include "nn/quantize.h"

#include <cmath>
#include <string>

namespace aegis::nn {

BitDepthReduction::BitDepthReduction(int bits) : m_bits(bits) {
  AEGIS_CHECK(bits >= 1 && bits <= 16, "bit-depth reduction: bits " << bits << " must be in [1, 16]");
}

std::string BitDepthReduction::describe() const {
  return "BitDepthReduction(" + std::to_string(m_bits) + " bits)";
}

Var BitDepthReduction::forward(const Var& x) {
  check_dtype(x.value(), DType::F32, "bit-depth reduction input");
  const double levels = std::ldexp(1.0, m_bits) - 1.0;
  std::vector<float> v = x.value().to(Device::cpu()).to_vector<float>();
  for (float& e : v) e = static_cast<float>(std::nearbyint(static_cast<double>(e) * levels) / levels);
  Tensor y = Tensor::from_vector(v, x.value().shape()).to(x.value().device());
  const bool straight = straight_through();
  return autograd::make_result(std::move(y), {x}, "bit_depth_reduction", [x, straight](const Tensor& gy) {
    // BPDA: dy/dx ≈ 1. Otherwise the true derivative of the step function, 0 almost everywhere
    // (accumulated, so that the input's gradient is defined and reads 0).
    if (straight) {
      x.accumulate_grad(gy);
    } else {
      x.accumulate_grad(Tensor::zeros(gy.shape(), DType::F32, gy.device()));
    }
  });
}

std::shared_ptr<Module> with_input_quantization(std::shared_ptr<Module> model, int bits) {
  AEGIS_CHECK(model != nullptr, "with_input_quantization: no model");
  return std::make_shared<Sequential>(
      std::vector<ModulePtr>{std::make_shared<BitDepthReduction>(bits), std::move(model)});
}

namespace {
void collect(Module& m, std::vector<NonDifferentiable*>& out) {
  if (auto* nd = dynamic_cast<NonDifferentiable*>(&m)) out.push_back(nd);
  for (const auto& child : m.children()) collect(*child.second, out);
}
}  // namespace

BpdaScope::BpdaScope(Module& model, bool enable) {
  if (!enable) return;
  std::vector<NonDifferentiable*> layers;
  collect(model, layers);
  for (NonDifferentiable* layer : layers) {
    m_saved.emplace_back(layer, layer->straight_through());
    layer->set_straight_through(true);
  }
}

BpdaScope::~BpdaScope() {
  for (auto& [layer, mode] : m_saved) layer->set_straight_through(mode);
}

}  // namespace aegis::nn
