// Flattening a supported model into bound-propagation nodes (certify/bounds_graph.h), the
// support check, the input set and the host helpers.
#include "certify/bounds_graph.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <typeinfo>

#include "nn/graph_module.h"
#include "nn/layers.h"
#include "nn/residual.h"

namespace aegis::certify {

namespace {

constexpr const char* kSupported =
    "Linear, Conv2d, ReLU, Tanh, Sigmoid, Flatten, AvgPool2d, MaxPool2d, Sequential and Residual (nn/residual.h)";

bool is_leaf_kind(const nn::Module& m) {
  const std::type_info& t = typeid(m);
  return t == typeid(nn::Linear) || t == typeid(nn::Conv2d) || t == typeid(nn::ActivationLayer) ||
         t == typeid(nn::Flatten) || t == typeid(nn::AvgPool2d) || t == typeid(nn::MaxPool2d);
}

bool is_container_kind(const nn::Module& m) {
  return typeid(m) == typeid(nn::Sequential) || typeid(m) == typeid(nn::Residual);
}

std::string join(const std::string& path, const std::string& name) {
  return path.empty() ? name : path + "." + name;
}

std::string where(const nn::Module& m, const std::string& path) {
  return (path.empty() ? std::string("the model itself") : "layer '" + path + "'") + " (" + m.describe() + ")";
}

// The first module, in parameter-name order, that is neither a supported layer nor a supported
// container; modules without children (GroupNorm) are reported before a container
// with its own forward (a zoo ResNet20), whose unsupported parts are then named directly.
void find_unsupported(const nn::Module& m, const std::string& path, std::string& leaf, std::string& container) {
  const bool supported = is_leaf_kind(m) || is_container_kind(m);
  if (m.children().empty()) {
    if (!supported && leaf.empty()) leaf = where(m, path);
    return;
  }
  if (!supported && container.empty()) container = where(m, path);
  for (const auto& [name, child] : m.children()) find_unsupported(*child, join(path, name), leaf, container);
}

}  // namespace

void check_supported(const nn::Module& model) {
  if (typeid(model) == typeid(nn::GraphModule)) return detail::check_graph_module(model);
  std::string leaf, container;
  find_unsupported(model, "", leaf, container);
  AEGIS_CHECK(leaf.empty(), "bound propagation does not support " << leaf << "; supported: " << kSupported);
  AEGIS_CHECK(container.empty(),
              "bound propagation does not support "
                  << container << ": a module with its own forward cannot be followed; supported: " << kSupported);
}

namespace detail {

namespace {

kernels::Activation activation_of(const nn::Module& m) {
  const std::string k = m.kind();
  if (k == "ReLU") return kernels::Activation::ReLU;
  if (k == "Tanh") return kernels::Activation::Tanh;
  if (k == "Sigmoid") return kernels::Activation::Sigmoid;
  AEGIS_THROW(InvalidArgument, "bound propagation does not support activation " << k);
}

Tensor value_or_none(const autograd::Var& v) {
  return v.defined() ? v.value() : Tensor();
}

// The nodes of a zoo model (Sequential, Residual and the supported layers), reading node `in`.
int visit(GraphBuilder& b, nn::Module& m, const std::string& path, int in) {
  const std::type_info& t = typeid(m);
  if (t == typeid(nn::Sequential)) {
    for (const auto& [name, child] : m.children()) in = visit(b, *child, join(path, name), in);
    return in;
  }
  if (t == typeid(nn::Residual)) {
    const int body = visit(b, static_cast<nn::Residual&>(m).body(), join(path, "body"), in);
    AEGIS_CHECK_AS(ShapeError, b.shape_of(body) == b.shape_of(in),
                   where(m, path) << ": the body maps " << shape_str(b.shape_of(in)) << " to "
                                  << shape_str(b.shape_of(body)) << ", but y = x + body(x) needs equal shapes");
    return b.add(in, body, where(m, path));
  }
  if (t == typeid(nn::Linear)) {
    const auto& l = static_cast<nn::Linear&>(m);
    return b.linear(l.weight().value(), value_or_none(l.bias()), in, where(m, path));
  }
  if (t == typeid(nn::Conv2d)) {
    const auto& c = static_cast<nn::Conv2d&>(m);
    return b.conv(c.weight().value(), value_or_none(c.bias()), c.options(), in,
                  where(m, path));
  }
  if (t == typeid(nn::ActivationLayer)) return b.activation(activation_of(m), in, where(m, path));
  if (t == typeid(nn::Flatten)) return b.reshape({shape_numel(b.shape_of(in))}, in, where(m, path));
  if (t == typeid(nn::AvgPool2d)) {
    const nn::Pool2dOptions& po = static_cast<nn::AvgPool2d&>(m).options();
    return b.avg_pool(po, in, where(m, path));
  }
  if (t == typeid(nn::MaxPool2d)) {
    const nn::Pool2dOptions& po = static_cast<nn::MaxPool2d&>(m).options();
    return b.max_pool(po, in, where(m, path));
  }
  check_supported(m);  // names the unsupported module inside m
  AEGIS_THROW(InvalidArgument,
              "bound propagation does not support " << where(m, path) << "; supported: " << kSupported);
}

// v rounded to a float no larger (down) or no smaller (up) than v, so B's box contains B.
float round_float(double v, bool down) {
  float f = static_cast<float>(v);
  if (down && static_cast<double>(f) > v) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  if (!down && static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

}  // namespace

Graph build_graph(nn::Module& model, const Shape& example_shape, Device device) {
  check_supported(model);
  GraphBuilder b(device);
  const int in = b.input(example_shape);
  if (typeid(model) == typeid(nn::GraphModule))
    add_graph_module(b, model, in);
  else
    visit(b, model, "", in);
  Graph g = b.finish();
  AEGIS_CHECK_AS(ShapeError, g.output().shape.size() == 1 && g.nodes.size() > 1,
                 "bound propagation needs a model whose output is logits [N, K], but it maps one example of shape "
                     << shape_str(example_shape) << " to " << shape_str(g.output().shape));
  return g;
}

InputSet make_input_set(const Tensor& x0, const BoundOptions& options) {
  InputSet s;
  s.l2 = options.norm == Norm::L2;
  s.eps = options.eps;
  s.n = x0.size(0);
  s.d = s.n > 0 ? x0.numel() / s.n : 0;
  s.x0 = x0;
  s.x0_host = host_floats(x0);
  s.lo_host.resize(s.x0_host.size());
  s.hi_host.resize(s.x0_host.size());
  for (std::size_t i = 0; i < s.x0_host.size(); ++i) {
    const double v = s.x0_host[i];
    s.lo_host[i] = round_float(std::max(0.0, v - s.eps), true);
    s.hi_host[i] = round_float(std::min(1.0, v + s.eps), false);
  }
  s.box.lower = device_tensor(s.lo_host, x0.shape(), x0.device());
  s.box.upper = device_tensor(s.hi_host, x0.shape(), x0.device());
  return s;
}

InputSet make_box_input_set(const Tensor& lower, const Tensor& upper) {
  InputSet s;
  s.n = lower.size(0);
  s.d = s.n > 0 ? lower.numel() / s.n : 0;
  s.lo_host = host_floats(lower);
  s.hi_host = host_floats(upper);
  s.x0_host.resize(s.lo_host.size());
  for (std::size_t i = 0; i < s.lo_host.size(); ++i)
    s.x0_host[i] = static_cast<float>(0.5 * (static_cast<double>(s.lo_host[i]) + s.hi_host[i]));
  s.x0 = device_tensor(s.x0_host, lower.shape(), lower.device());
  s.box.lower = lower;
  s.box.upper = upper;
  return s;
}

std::vector<float> host_floats(const Tensor& t) {
  return t.to_vector<float>();
}

Tensor device_tensor(const std::vector<float>& values, const Shape& shape, Device device) {
  return Tensor::from_vector(values, shape).to(device);
}

void intersect(Box& box, const std::vector<float>& lo, const std::vector<float>& hi) {
  std::vector<float> l = host_floats(box.lower), u = host_floats(box.upper);
  for (std::size_t i = 0; i < l.size(); ++i) {
    l[i] = std::max(l[i], lo[i]);
    u[i] = std::min(u[i], hi[i]);
    // Both bounds hold for the true value, so they can cross only by float rounding.
    if (l[i] > u[i]) l[i] = u[i] = 0.5f * (l[i] + u[i]);
  }
  box.lower = device_tensor(l, box.lower.shape(), box.lower.device());
  box.upper = device_tensor(u, box.upper.shape(), box.upper.device());
}

}  // namespace detail
}  // namespace aegis::certify
