#include "nn/module.h"

#include <cmath>

namespace aegis::nn {

Var Module::register_parameter(const std::string& name, Tensor value) {
  Var v(std::move(value), true);
  m_params.emplace_back(name, v);
  return v;
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Var>>& out) const {
  for (const auto& [name, v] : m_params) out.emplace_back(prefix + name, v);
  for (const auto& [name, child] : m_children) child->collect(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Var>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Var>> out;
  collect("", out);
  return out;
}

std::vector<Var> Module::parameters() const {
  std::vector<Var> out;
  for (auto& [name, v] : named_parameters()) out.push_back(v);
  return out;
}

std::int64_t Module::num_parameters() const {
  std::int64_t n = 0;
  for (const Var& v : parameters()) n += v.value().numel();
  return n;
}

void Module::to(Device device) {
  for (Var& v : parameters()) {
    v.mutable_value() = v.value().to(device);
    v.zero_grad();
  }
}

void Module::set_requires_grad(bool on) {
  for (Var& v : parameters()) v.set_requires_grad(on);
}

void Module::zero_grad() {
  for (Var& v : parameters()) v.zero_grad();
}

void Module::train(bool on) {
  m_training = on;
  for (auto& [name, child] : m_children) child->train(on);
}

void Module::set_capture(bool on) {
  if (LayerCapture* c = capture()) {
    c->enabled = on;
    c->activation = Tensor();
    c->output_grad = Tensor();
  }
  for (auto& [name, child] : m_children) child->set_capture(on);
}

void Module::summarize(const std::string& name, int depth, std::string& out) const {
  out += std::string(static_cast<std::size_t>(depth) * 2, ' ');
  if (!name.empty()) out += name + ": ";
  out += describe() + "\n";
  for (const auto& [child_name, child] : m_children) child->summarize(child_name, depth + 1, out);
}

std::string Module::summary() const {
  std::string out;
  summarize("", 0, out);
  return out;
}

FrozenScope::FrozenScope(Module& model)
    : m_model(model), m_params(model.parameters()), m_training(model.training()) {
  for (Var& p : m_params) {
    m_saved.push_back(p.requires_grad());
    p.set_requires_grad(false);
  }
  model.train(false);
}

FrozenScope::~FrozenScope() {
  for (std::size_t i = 0; i < m_params.size(); ++i) m_params[i].set_requires_grad(m_saved[i]);
  m_model.train(m_training);
}

Sequential::Sequential(std::vector<ModulePtr> layers) {
  for (auto& l : layers) push_back(std::move(l));
}

void Sequential::push_back(ModulePtr layer) {
  AEGIS_CHECK(layer != nullptr, "Sequential::push_back given a null layer");
  register_module(std::to_string(children().size()), std::move(layer));
}

Var Sequential::forward(const Var& x) {
  Var h = x;
  for (const auto& [name, child] : children()) h = child->forward(h);
  return h;
}

std::vector<std::string> non_finite_parameters(const Module& model) {
  std::vector<std::string> out;
  for (const auto& [name, v] : model.named_parameters()) {
    const Tensor host = v.value().to(Device::cpu());
    if (host.dtype() == DType::I32) continue;
    const std::vector<double> values = host.dtype() == DType::F64 ? host.to_vector<double>() : [&] {
      const std::vector<float> f = host.to_vector<float>();
      return std::vector<double>(f.begin(), f.end());
    }();
    std::int64_t bad = 0;
    for (double x : values) bad += !std::isfinite(x);
    if (bad > 0)
      out.push_back("'" + name + "' (" + std::to_string(bad) + " of " + std::to_string(values.size()) +
                    " values NaN or Inf)");
  }
  return out;
}

}  // namespace aegis::nn
