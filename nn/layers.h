// The layers of the model zoo. Initialization follows PyTorch's defaults so that models trained
// here and there start from the same distribution:
//   Linear/Conv2d weight ~ U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a = √5), bias likewise;
//   GroupNorm γ = 1, β = 0.
#pragma once

#include <cstdint>
#include <string>

#include "nn/module.h"

namespace aegis::nn {

class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, InitRng& rng, bool bias = true);
  Var forward(const Var& x) override;
  std::string kind() const override { return "Linear"; }
  std::string describe() const override;
  LayerCapture* capture() override { return &m_capture; }
  const Var& weight() const { return m_weight; }
  const Var& bias() const { return m_bias; }

 private:
  std::int64_t m_in, m_out;
  Var m_weight, m_bias;
  LayerCapture m_capture;
};

class Conv2d : public Module {
 public:
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel, InitRng& rng,
         Conv2dOptions opt = {}, bool bias = true);
  Var forward(const Var& x) override;
  std::string kind() const override { return "Conv2d"; }
  std::string describe() const override;
  LayerCapture* capture() override { return &m_capture; }
  const Var& weight() const { return m_weight; }
  const Var& bias() const { return m_bias; }
  const Conv2dOptions& options() const { return m_opt; }

 private:
  std::int64_t m_in, m_out, m_kernel;
  Conv2dOptions m_opt;
  Var m_weight, m_bias;
  LayerCapture m_capture;
};

enum class ActivationKind { ReLU, Tanh, Sigmoid };
ActivationKind parse_activation(const std::string& name);  // "relu" | "tanh" | "sigmoid"

class ActivationLayer : public Module {
 public:
  explicit ActivationLayer(ActivationKind f) : m_kind(f) {}
  Var forward(const Var& x) override;
  std::string kind() const override;

 private:
  ActivationKind m_kind;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Pool2dOptions opt) : m_opt(opt) {}
  Var forward(const Var& x) override { return F::max_pool2d(x, m_opt); }
  std::string kind() const override { return "MaxPool2d"; }
  std::string describe() const override;
  const Pool2dOptions& options() const { return m_opt; }

 private:
  Pool2dOptions m_opt;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Pool2dOptions opt) : m_opt(opt) {}
  Var forward(const Var& x) override { return F::avg_pool2d(x, m_opt); }
  std::string kind() const override { return "AvgPool2d"; }
  std::string describe() const override;
  const Pool2dOptions& options() const { return m_opt; }

 private:
  Pool2dOptions m_opt;
};

class GroupNorm : public Module {
 public:
  GroupNorm(std::int64_t groups, std::int64_t channels, float eps = 1e-5f, bool affine = true);
  Var forward(const Var& x) override;
  std::string kind() const override { return "GroupNorm"; }
  std::string describe() const override;
  // Without affine parameters it normalizes each example on its own: a fixed feature.
  bool fixed_feature() const override { return !m_weight.defined(); }
  LayerCapture* capture() override { return &m_capture; }

 private:
  std::int64_t m_groups, m_channels;
  float m_eps;
  Var m_weight, m_bias;
  LayerCapture m_capture;
};

// The 2-d scattering transform (F::scattering2d, Kymatio's Scattering2D) as a fixed front end:
// no parameters, no randomness, the same in training and evaluation, so a trainer may compute
// it once per example (fixed_feature()).
class Scattering2d : public Module {
 public:
  Scattering2d(int J, int L) : m_J(J), m_L(L) {}
  Var forward(const Var& x) override { return F::scattering2d(x, m_J, m_L); }
  std::string kind() const override { return "Scattering2d"; }
  std::string describe() const override;
  bool fixed_feature() const override { return true; }
  int J() const { return m_J; }
  int L() const { return m_L; }

 private:
  int m_J, m_L;
};

class Flatten : public Module {
 public:
  Var forward(const Var& x) override { return F::flatten(x); }
  std::string kind() const override { return "Flatten"; }
};

}  // namespace aegis::nn
