// The PixelDP noise layer, operator norms of the pre-noise layers, and the network that holds
// them (Lecuyer et al. 2019, §III-A and §III-B).
#include <algorithm>
#include <cmath>
#include <sstream>

#include "certify/pixeldp.h"
#include "kernels/random.h"
#include "nn/layers.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::certify {

using nn::Var;

// ---- NoiseLayer --------------------------------------------------------------------------------

NoiseLayer::NoiseLayer(NoiseKind kind, double scale, std::uint64_t seed) : m_kind(kind), m_scale(scale), m_seed(seed) {
  AEGIS_CHECK(std::isfinite(scale) && scale > 0.0, "PixelDP noise scale " << scale << " must be positive and finite");
}

void NoiseLayer::set_seed(std::uint64_t seed) {
  m_seed = seed;
  m_counter = 0;
  m_fixed = false;
}

void NoiseLayer::set_next_draw(std::uint32_t step, std::uint64_t first_row) {
  AEGIS_CHECK(step >= kFixedStepBase, "a fixed noise draw needs step ≥ " << kFixedStepBase << ", got " << step);
  m_fixed = true;
  m_fixed_step = step;
  m_fixed_row = first_row;
}

Var NoiseLayer::forward(const Var& x) {
  const Tensor& xv = x.value();
  check_dtype(xv, DType::F32, "PixelDP noise layer input");
  AEGIS_CHECK_AS(ShapeError, xv.dim() >= 1 && xv.size(0) >= 1,
                 "PixelDP noise layer: input must be [N, ...] with N ≥ 1, got " << xv.describe());
  const std::int64_t per_row = xv.numel() / xv.size(0);
  philox::Key key{m_seed, philox::kPurposePixelDp, 0};
  std::uint64_t offset = 0;
  if (m_fixed) {
    key.step = m_fixed_step;
    offset = m_fixed_row * static_cast<std::uint64_t>(per_row);
    m_fixed = false;
  } else {
    AEGIS_CHECK(m_counter < kFixedStepBase,
                "PixelDP noise layer: " << m_counter << " noise draws exhaust the counter space");
    key.step = m_counter++;
  }
  Tensor noise = Tensor::empty_like(xv);
  const auto scale = static_cast<float>(m_scale);
  if (m_kind == NoiseKind::Gaussian)
    AEGIS_DISPATCH(xv.device(), fill_normal(noise.data<float>(), noise.numel(), key, offset, 0.0f, scale));
  else
    AEGIS_DISPATCH(xv.device(), fill_laplace(noise.data<float>(), noise.numel(), key, offset, scale));
  return nn::F::add(x, Var(std::move(noise), false));
}

std::string NoiseLayer::describe() const {
  std::ostringstream os;
  os << "PixelDpNoise(" << noise_kind_name(m_kind) << ", " << (m_kind == NoiseKind::Gaussian ? "sigma" : "b") << "="
     << m_scale << ")";
  return os.str();
}

// ---- operator norms ----------------------------------------------------------------------------

namespace {
double squared_norm(const Tensor& t) {
  double s = 0.0;
  for (float v : t.to(Device::cpu()).to_vector<float>()) s += static_cast<double>(v) * v;
  return s;
}

LinearMap conv_map(const Tensor& weight, nn::Conv2dOptions opt) {
  return [weight, opt](const Var& v) { return nn::F::conv2d(v, Var(weight, false), Var(), opt); };
}
LinearMap linear_map(const Tensor& weight) {
  return [weight](const Var& v) { return nn::F::linear(v, Var(weight, false), Var()); };
}

void check_conv_weight(const Tensor& w, const char* what) {
  check_dtype(w, DType::F32, what);
  AEGIS_CHECK_AS(ShapeError, w.dim() == 4, what << " must be [O, C, kh, kw], got " << w.describe());
}
void check_linear_weight(const Tensor& w, const char* what) {
  check_dtype(w, DType::F32, what);
  AEGIS_CHECK_AS(ShapeError, w.dim() == 2, what << " must be [out, in], got " << w.describe());
}

// Σ_o Σ_{kh≡a, kw≡b (mod s)} |W[o,c,kh,kw]| for every (c, a, b), as [C][s·s] (host weight).
std::vector<double> l1_groups(const std::vector<float>& w, const Shape& s, std::int64_t stride) {
  const std::int64_t o_n = s[0], c_n = s[1], kh_n = s[2], kw_n = s[3];
  std::vector<double> groups(static_cast<std::size_t>(c_n * stride * stride), 0.0);
  for (std::int64_t o = 0; o < o_n; ++o)
    for (std::int64_t c = 0; c < c_n; ++c)
      for (std::int64_t kh = 0; kh < kh_n; ++kh)
        for (std::int64_t kw = 0; kw < kw_n; ++kw) {
          const float v = w[static_cast<std::size_t>(((o * c_n + c) * kh_n + kh) * kw_n + kw)];
          groups[static_cast<std::size_t>((c * stride + kh % stride) * stride + kw % stride)] += std::fabs(v);
        }
  return groups;
}
}  // namespace

PowerIteration::PowerIteration(Shape input_shape, std::uint64_t seed) : m_shape(std::move(input_shape)), m_seed(seed) {
  AEGIS_CHECK(!m_shape.empty() && shape_numel(m_shape) > 0,
              "power iteration: input shape " << shape_str(m_shape) << " must be non-empty");
}

double PowerIteration::run(const LinearMap& map, Device device, int max_iterations, double rel_tol) {
  AEGIS_CHECK(max_iterations >= 1, "power iteration: iterations " << max_iterations << " must be at least 1");
  AEGIS_CHECK(std::isfinite(rel_tol) && rel_tol >= 0.0, "power iteration: tolerance " << rel_tol << " must be ≥ 0");
  if (!m_v.defined()) {
    Shape shape{1};
    shape.insert(shape.end(), m_shape.begin(), m_shape.end());
    m_v = Tensor::empty(shape);
    ops::fill_normal(m_v, philox::Key{m_seed, philox::kPurposeGeneric, 0}, 0.0f, 1.0f);
    ops::scale_inplace(m_v, static_cast<float>(1.0 / std::sqrt(squared_norm(m_v))));
  }
  m_v = m_v.to(device);
  double previous = -1.0;
  for (int it = 0; it < max_iterations; ++it) {
    // One step: g = AᵀA v (the gradient of ½‖Av‖²), ‖Av‖ = the estimate for the unit v.
    Var v(m_v, true);
    Var y = map(v);
    const double estimate = std::sqrt(squared_norm(y.value()));
    autograd::backward(y, y.value());
    Tensor g = v.grad().clone();
    const double g_norm = std::sqrt(squared_norm(g));
    if (!(g_norm > 0.0)) return 0.0;  // A v = 0 for the current direction: A is zero (or v lies in its kernel)
    ops::scale_inplace(g, static_cast<float>(1.0 / g_norm));
    m_v = g;
    if (previous >= 0.0 && std::fabs(estimate - previous) <= rel_tol * estimate) break;
    previous = estimate;
  }
  const double norm = std::sqrt(squared_norm(map(Var(m_v, false)).value()));
  AEGIS_CHECK_AS(NumericError, std::isfinite(norm), "power iteration produced a non-finite norm " << norm);
  return norm;
}

double conv2d_spectral_norm(const Tensor& weight, nn::Conv2dOptions opt, const Shape& input_chw, int max_iterations,
                            double rel_tol) {
  check_conv_weight(weight, "conv2d_spectral_norm weight");
  AEGIS_CHECK_AS(
      ShapeError, input_chw.size() == 3 && input_chw[0] == weight.size(1),
      "conv2d_spectral_norm: input " << shape_str(input_chw) << " does not fit weight " << weight.describe());
  PowerIteration power(input_chw, 0);
  return power.run(conv_map(weight, opt), weight.device(), max_iterations, rel_tol);
}

double linear_spectral_norm(const Tensor& weight, int max_iterations, double rel_tol) {
  check_linear_weight(weight, "linear_spectral_norm weight");
  PowerIteration power({weight.size(1)}, 0);
  return power.run(linear_map(weight), weight.device(), max_iterations, rel_tol);
}

double conv2d_l1_norm(const Tensor& weight, nn::Conv2dOptions opt) {
  check_conv_weight(weight, "conv2d_l1_norm weight");
  AEGIS_CHECK(opt.stride >= 1, "conv2d_l1_norm: stride " << opt.stride << " must be positive");
  const std::vector<double> g = l1_groups(weight.to(Device::cpu()).to_vector<float>(), weight.shape(), opt.stride);
  return g.empty() ? 0.0 : *std::max_element(g.begin(), g.end());
}

double linear_l1_norm(const Tensor& weight) {
  check_linear_weight(weight, "linear_l1_norm weight");
  return conv2d_l1_norm(weight.reshape({weight.size(0), weight.size(1), 1, 1}), nn::Conv2dOptions{1, 0});
}

void project_l1_columns(Tensor& weight, nn::Conv2dOptions opt) {
  check_dtype(weight, DType::F32, "project_l1_columns weight");
  AEGIS_CHECK_AS(ShapeError, weight.dim() == 2 || weight.dim() == 4,
                 "project_l1_columns: weight must be [out, in] or [O, C, kh, kw], got " << weight.describe());
  const Shape s = weight.dim() == 4 ? weight.shape() : Shape{weight.size(0), weight.size(1), 1, 1};
  const std::int64_t stride = weight.dim() == 4 ? opt.stride : 1;
  AEGIS_CHECK(stride >= 1, "project_l1_columns: stride " << stride << " must be positive");
  std::vector<float> w = weight.to(Device::cpu()).to_vector<float>();
  const std::vector<double> g = l1_groups(w, s, stride);
  for (std::int64_t o = 0; o < s[0]; ++o)
    for (std::int64_t c = 0; c < s[1]; ++c)
      for (std::int64_t kh = 0; kh < s[2]; ++kh)
        for (std::int64_t kw = 0; kw < s[3]; ++kw) {
          const double norm = g[static_cast<std::size_t>((c * stride + kh % stride) * stride + kw % stride)];
          if (norm > 1.0)
            w[static_cast<std::size_t>(((o * s[1] + c) * s[2] + kh) * s[3] + kw)] /= static_cast<float>(norm);
        }
  weight.copy_from(Tensor::from_vector(w, weight.shape()));
}

double pooling_lipschitz(const nn::Pool2dOptions& opt, bool average, PixelDpNorm norm) {
  AEGIS_CHECK(opt.kernel >= 1 && opt.stride >= 1,
              "pooling kernel " << opt.kernel << " and stride " << opt.stride << " must be positive");
  const double per_dim = static_cast<double>((opt.kernel + opt.stride - 1) / opt.stride);  // ceil(k/s)
  const double windows = per_dim * per_dim;
  const double k2 = static_cast<double>(opt.kernel * opt.kernel);
  if (norm == PixelDpNorm::L1) return average ? windows / k2 : windows;
  return average ? std::sqrt(windows / k2) : std::sqrt(windows);
}

// ---- PixelDpNet ----------------------------------------------------------------------------------

namespace {
std::int64_t pooled(std::int64_t size, std::int64_t kernel, std::int64_t stride, std::int64_t padding) {
  return (size + 2 * padding - kernel) / stride + 1;
}
}  // namespace

PixelDpNet::PixelDpNet(const std::shared_ptr<nn::Module>& base, Shape input_shape, int position, PixelDpNorm norm,
                       double noise_scale, std::uint64_t noise_seed)
    : m_input_shape(std::move(input_shape)), m_position(position), m_norm(norm) {
  AEGIS_CHECK(position >= 0 && position <= 2,
              "PixelDP noise position " << position << " must be 0 (input), 1 or 2 (after the first or second layer)");
  AEGIS_CHECK(base != nullptr && dynamic_cast<nn::Sequential*>(base.get()) != nullptr,
              "PixelDP needs a Sequential model (mlp, cnn-fmnist, lenet-2conv), got "
                  << (base ? base->kind() : std::string("null")));
  AEGIS_CHECK(m_input_shape.size() == 3, "PixelDP input shape " << shape_str(m_input_shape) << " must be {C, H, W}");
  for (const auto& [name, child] : base->children()) {
    register_module(name, child);
    m_layers.push_back(child);
  }
  m_noise = register_module("noise", std::make_shared<NoiseLayer>(noise_kind_for(norm), noise_scale, noise_seed));

  // Walk the layers in front of the noise, tracking one example's shape.
  Shape shape = m_input_shape;
  int linear_seen = 0;
  m_noise_index = 0;
  while (linear_seen < position) {
    AEGIS_CHECK(m_noise_index < m_layers.size(),
                "PixelDP position " << position << ": the model has only " << linear_seen << " Conv2d/Linear layers");
    const auto& layer = m_layers[m_noise_index];
    PreNoise p;
    p.layer = layer;
    p.input_shape = shape;
    const std::string kind = layer->kind();
    if (auto* conv = dynamic_cast<nn::Conv2d*>(layer.get())) {
      const Tensor& w = conv->weight().value();
      const nn::Conv2dOptions o = conv->options();
      AEGIS_CHECK_AS(ShapeError, shape.size() == 3 && shape[0] == w.size(1),
                     "PixelDP: layer " << m_noise_index << " Conv2d takes " << w.size(1) << " channels, input is "
                                       << shape_str(shape));
      shape = {w.size(0), pooled(shape[1], o.dilation * (w.size(2) - 1) + 1, o.stride, o.padding),
               pooled(shape[2], o.dilation * (w.size(3) - 1) + 1, o.stride, o.padding)};
      p.linear = true;
    } else if (auto* lin = dynamic_cast<nn::Linear*>(layer.get())) {
      const Tensor& w = lin->weight().value();
      AEGIS_CHECK_AS(ShapeError, shape.size() == 1 && shape[0] == w.size(1),
                     "PixelDP: layer " << m_noise_index << " Linear takes " << w.size(1) << " features, input is "
                                       << shape_str(shape));
      shape = {w.size(0)};
      p.linear = true;
    } else if (auto* maxp = dynamic_cast<nn::MaxPool2d*>(layer.get())) {
      const nn::Pool2dOptions& o = maxp->options();
      p.constant = pooling_lipschitz(o, false, norm);
      shape = {shape[0], pooled(shape[1], o.kernel, o.stride, o.padding),
               pooled(shape[2], o.kernel, o.stride, o.padding)};
    } else if (auto* avgp = dynamic_cast<nn::AvgPool2d*>(layer.get())) {
      const nn::Pool2dOptions& o = avgp->options();
      p.constant = pooling_lipschitz(o, true, norm);
      shape = {shape[0], pooled(shape[1], o.kernel, o.stride, o.padding),
               pooled(shape[2], o.kernel, o.stride, o.padding)};
    } else if (kind == "ReLU" || kind == "Tanh") {
      p.constant = 1.0;  // |f(a) − f(b)| ≤ |a − b| elementwise
    } else if (kind == "Sigmoid") {
      p.constant = 0.25;  // sup σ' = σ'(0) = ¼
    } else if (kind == "Flatten") {
      shape = {shape_numel(shape)};
    } else {
      AEGIS_THROW(InvalidArgument, "PixelDP: layer " << m_noise_index << " (" << kind
                                                     << ") in front of the noise has no sensitivity bound");
    }
    if (p.linear) {
      ++linear_seen;
      p.power = std::make_shared<PowerIteration>(p.input_shape, noise_seed + m_noise_index);
    }
    m_pre_noise.push_back(p);
    ++m_noise_index;
  }
}

Var PixelDpNet::forward(const Var& x) {
  Shape expected{x.value().dim() > 0 ? x.value().size(0) : 0};
  expected.insert(expected.end(), m_input_shape.begin(), m_input_shape.end());
  AEGIS_CHECK_AS(ShapeError, x.value().shape() == expected && expected[0] >= 1,
                 "PixelDpNet: input must be [N, " << m_input_shape[0] << ", " << m_input_shape[1] << ", "
                                                  << m_input_shape[2] << "], got " << x.value().describe());
  Var h = x;
  for (std::size_t i = 0; i < m_layers.size(); ++i) {
    if (i == m_noise_index) h = m_noise->forward(h);
    h = m_layers[i]->forward(h);
  }
  if (m_noise_index == m_layers.size()) h = m_noise->forward(h);
  return h;
}

double PixelDpNet::sensitivity_bound() const {
  double delta = 1.0;
  for (const PreNoise& p : m_pre_noise)
    if (!p.linear) delta *= p.constant;
  return delta;
}

double PixelDpNet::operator_norm(const PreNoise& p, int max_iterations, double rel_tol) const {
  if (auto* conv = dynamic_cast<nn::Conv2d*>(p.layer.get()))
    return m_norm == PixelDpNorm::L1
               ? conv2d_l1_norm(conv->weight().value(), conv->options())
               : conv2d_spectral_norm(conv->weight().value(), conv->options(), p.input_shape, max_iterations, rel_tol);
  const Tensor& w = dynamic_cast<nn::Linear&>(*p.layer).weight().value();
  return m_norm == PixelDpNorm::L1 ? linear_l1_norm(w) : linear_spectral_norm(w, max_iterations, rel_tol);
}

double PixelDpNet::sensitivity(int max_iterations, double rel_tol) const {
  double delta = 1.0;
  for (const PreNoise& p : m_pre_noise) delta *= p.linear ? operator_norm(p, max_iterations, rel_tol) : p.constant;
  return delta;
}

void PixelDpNet::constrain(int power_iterations, double rel_tol) {
  AEGIS_CHECK(power_iterations >= 1, "power iterations " << power_iterations << " must be at least 1");
  for (PreNoise& p : m_pre_noise) {
    if (!p.linear) continue;
    auto* conv = dynamic_cast<nn::Conv2d*>(p.layer.get());
    Var weight = conv ? conv->weight() : dynamic_cast<nn::Linear&>(*p.layer).weight();
    Tensor& w = weight.mutable_value();
    const nn::Conv2dOptions opt = conv ? conv->options() : nn::Conv2dOptions{1, 0};
    if (m_norm == PixelDpNorm::L1) {
      project_l1_columns(w, opt);
      continue;
    }
    // L2: W ← W / max(1, ‖W‖₂), the estimate carried over from the previous step.
    const double norm = p.power->run(conv ? conv_map(w, opt) : linear_map(w), w.device(), power_iterations, rel_tol);
    if (norm > 1.0) ops::scale_inplace(w, static_cast<float>(1.0 / norm));
  }
}

std::shared_ptr<PixelDpNet> build_pixeldp(const nn::ModelSpec& spec, int position, const PixelDpParams& params,
                                          std::uint64_t noise_seed) {
  check_pixeldp_params(params);
  auto base = nn::build_model(spec);
  // Build once with a placeholder scale to learn the sensitivity bound, then calibrate.
  auto net = std::make_shared<PixelDpNet>(base, spec.input_shape, position, params.norm, 1.0, noise_seed);
  const double scale = noise_scale(params, net->sensitivity_bound());
  return std::make_shared<PixelDpNet>(base, spec.input_shape, position, params.norm, scale, noise_seed);
}

}  // namespace aegis::certify
