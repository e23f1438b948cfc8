// Module: a layer or a composition of layers with named parameters. Parameter names follow
// PyTorch's state_dict naming for the same architecture ("0.weight", "layer1.0.conv1.weight"),
// so model files exchange with PyTorch without conversion code.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/functional.h"
#include "core/philox.h"

namespace aegis::nn {

// Source of initialization randomness: every parameter tensor gets its own Philox step.
class InitRng {
 public:
  explicit InitRng(std::uint64_t seed) : m_seed(seed) {}
  philox::Key next() { return philox::Key{m_seed, philox::kPurposeInit, m_step++}; }

 private:
  std::uint64_t m_seed;
  std::uint32_t m_step = 0;
};

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  virtual Var forward(const Var& x) = 0;
  Var operator()(const Var& x) { return forward(x); }
  virtual std::string kind() const = 0;

  // All parameters of this module and its children, in registration order, with dotted names.
  std::vector<std::pair<std::string, Var>> named_parameters() const;
  std::vector<Var> parameters() const;
  std::int64_t num_parameters() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return m_children; }

  void to(Device device);            // moves every parameter
  void set_requires_grad(bool on);   // on every parameter
  void zero_grad();
  void train(bool on = true);        // recursive; layers that differ in training read training()
  bool training() const { return m_training; }
  // Turns (activation, output-gradient) capture on or off in every layer that has parameters.
  void set_capture(bool on);
  // The capture of this very layer (not its children), or null for layers without parameters.
  virtual LayerCapture* capture() { return nullptr; }
  // True for a parameterless map fixed for good (no randomness, no training/evaluation
  // difference, nothing learned before it): its output for an example never changes, so a
  // trainer may compute it once (privacy::train_dp_classifier does, for a leading run of such
  // layers of a Sequential).
  virtual bool fixed_feature() const { return false; }
  // One line per layer, indented by depth: "0: Conv2d(1, 16, kernel=8, stride=2, padding=2)".
  virtual std::string describe() const { return kind(); }
  std::string summary() const;

 protected:
  Var register_parameter(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    m_children.emplace_back(name, module);
    return module;
  }

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Var>>& out) const;
  void summarize(const std::string& name, int depth, std::string& out) const;
  std::vector<std::pair<std::string, Var>> m_params;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> m_children;
  bool m_training = true;
};

using ModulePtr = std::shared_ptr<Module>;

// Evaluation mode with every parameter's requires_grad off — inference and attacks, where no
// weight-gradient work may happen — restored (both) when the scope ends, however it ends.
class FrozenScope {
 public:
  explicit FrozenScope(Module& model);
  ~FrozenScope();
  FrozenScope(const FrozenScope&) = delete;
  FrozenScope& operator=(const FrozenScope&) = delete;

 private:
  Module& m_model;
  std::vector<Var> m_params;
  std::vector<bool> m_saved;
  bool m_training;
};

// Applies children in order; children are named "0", "1", ... like torch.nn.Sequential.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> layers);
  void push_back(ModulePtr layer);
  Var forward(const Var& x) override;
  std::string kind() const override { return "Sequential"; }
  std::size_t size() const { return children().size(); }
};

// The parameters of `model` that hold NaN or ±Inf, each as "name (c of n values)"; empty when
// every value is finite. Bound propagation and certification report these instead of results
// computed from them: NaN compares false, so a test such as "bound > 0" must never see one.
std::vector<std::string> non_finite_parameters(const Module& model);

}  // namespace aegis::nn
