#include "nn/layers.h"

#include <cmath>
#include <sstream>

#include "runtime/ops.h"

namespace aegis::nn {

namespace {
Tensor uniform_init(const Shape& shape, std::int64_t fan_in, InitRng& rng) {
  Tensor t = Tensor::empty(shape);
  const float bound = fan_in > 0 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 0.0f;
  ops::fill_uniform(t, rng.next(), -bound, bound);
  return t;
}
}  // namespace

Linear::Linear(std::int64_t in_features, std::int64_t out_features, InitRng& rng, bool bias)
    : m_in(in_features), m_out(out_features) {
  AEGIS_CHECK(in_features > 0 && out_features > 0,
              "Linear(" << in_features << ", " << out_features << "): sizes must be positive");
  m_weight = register_parameter("weight", uniform_init({out_features, in_features}, in_features, rng));
  if (bias) m_bias = register_parameter("bias", uniform_init({out_features}, in_features, rng));
}

Var Linear::forward(const Var& x) {
  return F::linear(x, m_weight, m_bias, &m_capture);
}

std::string Linear::describe() const {
  std::ostringstream os;
  os << "Linear(" << m_in << ", " << m_out << (m_bias.defined() ? "" : ", bias=false") << ")";
  return os.str();
}

Conv2d::Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel, InitRng& rng,
               Conv2dOptions opt, bool bias)
    : m_in(in_channels), m_out(out_channels), m_kernel(kernel), m_opt(opt) {
  AEGIS_CHECK(in_channels > 0 && out_channels > 0 && kernel > 0,
              "Conv2d(" << in_channels << ", " << out_channels << ", kernel=" << kernel << "): sizes must be positive");
  AEGIS_CHECK(opt.stride > 0 && opt.padding >= 0,
              "Conv2d: stride " << opt.stride << " must be positive and padding " << opt.padding << " non-negative");
  const std::int64_t fan_in = in_channels * kernel * kernel;
  m_weight = register_parameter("weight", uniform_init({out_channels, in_channels, kernel, kernel}, fan_in, rng));
  if (bias) m_bias = register_parameter("bias", uniform_init({out_channels}, fan_in, rng));
}

Var Conv2d::forward(const Var& x) {
  return F::conv2d(x, m_weight, m_bias, m_opt, &m_capture);
}

std::string Conv2d::describe() const {
  std::ostringstream os;
  os << "Conv2d(" << m_in << ", " << m_out << ", kernel=" << m_kernel << ", stride=" << m_opt.stride
     << ", padding=" << m_opt.padding << (m_bias.defined() ? "" : ", bias=false") << ")";
  return os.str();
}

ActivationKind parse_activation(const std::string& name) {
  if (name == "relu") return ActivationKind::ReLU;
  if (name == "tanh") return ActivationKind::Tanh;
  if (name == "sigmoid") return ActivationKind::Sigmoid;
  AEGIS_THROW(InvalidArgument, "unknown activation '" << name << "' (expected relu, tanh or sigmoid)");
}

Var ActivationLayer::forward(const Var& x) {
  switch (m_kind) {
    case ActivationKind::ReLU: return F::relu(x);
    case ActivationKind::Tanh: return F::tanh(x);
    case ActivationKind::Sigmoid: return F::sigmoid(x);
  }
  return x;
}

std::string ActivationLayer::kind() const {
  switch (m_kind) {
    case ActivationKind::ReLU: return "ReLU";
    case ActivationKind::Tanh: return "Tanh";
    case ActivationKind::Sigmoid: return "Sigmoid";
  }
  return "Activation";
}

namespace {
std::string pool_describe(const char* name, const Pool2dOptions& o) {
  std::ostringstream os;
  os << name << "(kernel=" << o.kernel << ", stride=" << o.stride << ", padding=" << o.padding << ")";
  return os.str();
}
}  // namespace

std::string MaxPool2d::describe() const {
  return pool_describe("MaxPool2d", m_opt);
}
std::string AvgPool2d::describe() const {
  return pool_describe("AvgPool2d", m_opt);
}

GroupNorm::GroupNorm(std::int64_t groups, std::int64_t channels, float eps, bool affine)
    : m_groups(groups), m_channels(channels), m_eps(eps) {
  AEGIS_CHECK(groups > 0 && channels > 0 && channels % groups == 0,
              "GroupNorm(" << groups << ", " << channels << "): channels must be a positive multiple of groups");
  AEGIS_CHECK(eps > 0.0f, "GroupNorm eps " << eps << " must be positive");
  if (affine) {
    m_weight = register_parameter("weight", Tensor::full({channels}, 1.0));
    m_bias = register_parameter("bias", Tensor::zeros({channels}));
  }
}

Var GroupNorm::forward(const Var& x) {
  return F::group_norm(x, m_groups, m_weight, m_bias, m_eps, &m_capture);
}

std::string GroupNorm::describe() const {
  std::ostringstream os;
  os << "GroupNorm(" << m_groups << ", " << m_channels << (m_weight.defined() ? "" : ", affine=false") << ")";
  return os.str();
}

std::string Scattering2d::describe() const {
  std::ostringstream os;
  os << "Scattering2d(J=" << m_J << ", L=" << m_L << ")";
  return os.str();
}

}  // namespace aegis::nn
