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
    "Linear, Conv2d, ReLU, Tanh, Sigmoid, Flatten, AvgPool2d, Sequential and Residual (nn/residual.h)";

bool is_leaf_kind(const nn::Module& m) {
  const std::type_info& t = typeid(m);
  return t == typeid(nn::Linear) || t == typeid(nn::Conv2d) || t == typeid(nn::ActivationLayer) ||
         t == typeid(nn::Flatten) || t == typeid(nn::AvgPool2d);
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
// container; modules without children (GroupNorm, MaxPool2d) are reported before a container
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
  if (typeid(model) == typeid(nn::GraphModule))
    AEGIS_THROW(Unsupported, "bound propagation (verify) through an imported ONNX model is not supported yet ("
                                 << model.describe() << "); eval, attack and certify take it; supported by verify: "
                                 << kSupported);
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

constexpr std::int64_t kMaxDenseConvElements = std::int64_t{1} << 18;

class Builder {
 public:
  explicit Builder(Device device) { m_graph.device = device; }

  int input(const Shape& shape) {
    Node n;
    n.shape = shape;
    n.where = "the input";
    return push(std::move(n));
  }

  int visit(nn::Module& m, const std::string& path, int in) {
    const std::type_info& t = typeid(m);
    if (t == typeid(nn::Sequential)) {
      for (const auto& [name, child] : m.children()) in = visit(*child, join(path, name), in);
      return in;
    }
    if (t == typeid(nn::Residual)) {
      const int body = visit(static_cast<nn::Residual&>(m).body(), join(path, "body"), in);
      AEGIS_CHECK_AS(ShapeError, shape_of(body) == shape_of(in),
                     where(m, path) << ": the body maps " << shape_str(shape_of(in)) << " to "
                                    << shape_str(shape_of(body)) << ", but y = x + body(x) needs equal shapes");
      return push(make(NodeKind::Add, {in, body}, shape_of(in), m, path));
    }
    if (t == typeid(nn::Linear)) return linear(static_cast<nn::Linear&>(m), path, in);
    if (t == typeid(nn::Conv2d)) return conv(static_cast<nn::Conv2d&>(m), path, in);
    if (t == typeid(nn::ActivationLayer)) {
      Node n = make(NodeKind::Activation, {in}, shape_of(in), m, path);
      n.activation = activation_of(m);
      return push(std::move(n));
    }
    if (t == typeid(nn::Flatten)) return push(make(NodeKind::Reshape, {in}, {shape_numel(shape_of(in))}, m, path));
    if (t == typeid(nn::AvgPool2d)) {
      AEGIS_CHECK_AS(ShapeError, shape_of(in).size() == 3,
                     where(m, path) << " needs [C, H, W] inputs, receives " << shape_str(shape_of(in)));
      Shape probe_shape{1};
      for (std::int64_t s : shape_of(in)) probe_shape.push_back(s);
      const Tensor probe = m.forward(autograd::Var(Tensor::zeros(probe_shape, DType::F32, m_graph.device))).value();
      Node n = make(NodeKind::AvgPool, {in}, Shape(probe.shape().begin() + 1, probe.shape().end()), m, path);
      n.module = &m;
      const nn::Pool2dOptions& po = static_cast<nn::AvgPool2d&>(m).options();
      n.pool.channels = shape_of(in)[0];
      n.pool.height = shape_of(in)[1];
      n.pool.width = shape_of(in)[2];
      n.pool.kernel = po.kernel;
      n.pool.stride = po.stride;
      n.pool.padding = po.padding;
      return push(std::move(n));
    }
    check_supported(m);  // names the unsupported module inside m
    AEGIS_THROW(InvalidArgument,
                "bound propagation does not support " << where(m, path) << "; supported: " << kSupported);
  }

  Graph finish() { return std::move(m_graph); }

 private:
  const Shape& shape_of(int i) const { return m_graph.nodes[static_cast<std::size_t>(i)].shape; }

  static Node make(NodeKind kind, std::vector<int> inputs, Shape shape, const nn::Module& m, const std::string& path) {
    Node n;
    n.kind = kind;
    n.inputs = std::move(inputs);
    n.shape = std::move(shape);
    n.where = where(m, path);
    return n;
  }

  int push(Node n) {
    n.size = shape_numel(n.shape);
    m_graph.nodes.push_back(std::move(n));
    return static_cast<int>(m_graph.nodes.size()) - 1;
  }

  // Whether node i is the input seen through reshapes.
  bool is_input(int i) const {
    while (m_graph.nodes[static_cast<std::size_t>(i)].kind == NodeKind::Reshape)
      i = m_graph.nodes[static_cast<std::size_t>(i)].inputs[0];
    return i == 0;
  }

  void set_weights(Node& n, const autograd::Var& w, const autograd::Var& b) {
    n.weight = w.value().to(m_graph.device);
    std::vector<float> host = host_floats(n.weight);
    for (float& v : host) v = std::fabs(v);
    n.abs_weight = device_tensor(host, n.weight.shape(), m_graph.device);
    if (b.defined()) n.bias = b.value().to(m_graph.device);
  }

  int linear(nn::Linear& m, const std::string& path, int in) {
    const Tensor& w = m.weight().value();
    const Shape& s = shape_of(in);
    AEGIS_CHECK_AS(ShapeError, s.size() == 1 && s[0] == w.size(1),
                   where(m, path) << " expects " << w.size(1) << " input features but receives one-example shape "
                                  << shape_str(s) << " (a Flatten may be missing)");
    Node n = make(NodeKind::Linear, {in}, {w.size(0)}, m, path);
    set_weights(n, m.weight(), m.bias());
    n.reads_input = is_input(in);
    if (n.reads_input) {
      // ‖W_i‖₂ of every row: the dual norm of L2 (Hölder), for the exact ball bound of this layer.
      const std::vector<float> wh = host_floats(n.weight);
      const std::int64_t cols = w.size(1);
      for (std::int64_t i = 0; i < w.size(0); ++i) {
        double sq = 0.0;
        for (std::int64_t j = 0; j < cols; ++j)
          sq += static_cast<double>(wh[static_cast<std::size_t>(i * cols + j)]) *
                wh[static_cast<std::size_t>(i * cols + j)];
        n.row_norm.push_back(static_cast<float>(std::sqrt(sq)));
      }
    }
    return push(std::move(n));
  }

  int conv(nn::Conv2d& m, const std::string& path, int in) {
    const Tensor& w = m.weight().value();
    const Shape& s = shape_of(in);
    AEGIS_CHECK_AS(ShapeError, s.size() == 3 && s[0] == w.size(1),
                   where(m, path) << " expects [" << w.size(1) << ", H, W] inputs but receives one-example shape "
                                  << shape_str(s));
    kernels::Conv2dGeometry geo;
    geo.batch = 1;
    geo.in_channels = s[0];
    geo.height = s[1];
    geo.width = s[2];
    geo.out_channels = w.size(0);
    geo.kernel_h = w.size(2);
    geo.kernel_w = w.size(3);
    geo.stride = m.options().stride;
    geo.padding = m.options().padding;
    geo.dilation = m.options().dilation;  // the kernels below take it; the adjoint shortcut does not
    AEGIS_CHECK_AS(ShapeError,
                   geo.height + 2 * geo.padding >= geo.extent_h() && geo.width + 2 * geo.padding >= geo.extent_w(),
                   where(m, path) << ": the kernel does not fit the input " << shape_str(s));
    const std::int64_t oh = geo.out_height(), ow = geo.out_width();
    Node n = make(NodeKind::Conv2d, {in}, {geo.out_channels, oh, ow}, m, path);
    n.geometry = geo;
    set_weights(n, m.weight(), m.bias());
    if (n.bias.defined()) {
      const std::vector<float> b = host_floats(n.bias);
      std::vector<float> map(static_cast<std::size_t>(geo.out_channels * oh * ow));
      for (std::size_t i = 0; i < map.size(); ++i) map[i] = b[i / static_cast<std::size_t>(oh * ow)];
      n.bias_map = device_tensor(map, {static_cast<std::int64_t>(map.size()), 1}, m_graph.device);
    }
    if (geo.stride == 1 && geo.dilation == 1 && geo.kernel_h == geo.kernel_w && geo.padding <= geo.kernel_h - 1) {
      // convᵀ as a convolution (bounds_linear.cpp): W'[c, o, a, b] = W[o, c, k−1−a, k−1−b].
      const std::vector<float> wh = host_floats(n.weight);
      const std::int64_t kk = geo.kernel_h, o_n = geo.out_channels, c_n = geo.in_channels;
      std::vector<float> flipped(wh.size());
      for (std::int64_t o = 0; o < o_n; ++o)
        for (std::int64_t c = 0; c < c_n; ++c)
          for (std::int64_t a = 0; a < kk; ++a)
            for (std::int64_t b = 0; b < kk; ++b)
              flipped[static_cast<std::size_t>(((c * o_n + o) * kk + a) * kk + b)] =
                  wh[static_cast<std::size_t>(((o * c_n + c) * kk + (kk - 1 - a)) * kk + (kk - 1 - b))];
      n.adjoint_weight = device_tensor(flipped, {c_n, o_n, kk, kk}, m_graph.device);
      kernels::Conv2dGeometry adj = geo;
      adj.in_channels = o_n;
      adj.height = oh;
      adj.width = ow;
      adj.out_channels = c_n;
      adj.padding = kk - 1 - geo.padding;
      n.adjoint_geometry = adj;
    }
    {
      // A convolution with few input channels (typically the one reading the image) has an
      // adjoint with few output channels, which the Winograd kernels do not take; on small
      // planes its dense matrix through the BLAS is faster although it multiplies H·W/k² times
      // as much (cnn-res's first layer on 8×8 digits: 27 → 22 ms per example in bench_verify).
      const std::int64_t in_size = shape_numel(s), out_size = geo.out_channels * oh * ow;
      // (The identity batch that forms it is in_size² elements: bounded too.)
      if (geo.in_channels < 8 && in_size * std::max(in_size, out_size) <= kMaxDenseConvElements) {
        std::vector<float> eye(static_cast<std::size_t>(in_size * in_size), 0.0f);
        for (std::int64_t i = 0; i < in_size; ++i) eye[static_cast<std::size_t>(i * in_size + i)] = 1.0f;
        kernels::Conv2dGeometry basis = geo;
        basis.batch = in_size;
        std::vector<float> cols(static_cast<std::size_t>(in_size * out_size));
        const std::vector<float> wh = host_floats(n.weight);
        kernels::cpu::conv2d_forward(basis, eye.data(), wh.data(), nullptr, cols.data());
        n.dense_transposed = device_tensor(cols, {in_size, out_size}, m_graph.device);
      }
    }
    n.reads_input = is_input(in);
    if (n.reads_input) {
      // Output element (o, h, w) is the dot product of W[o] with the in-bounds part of its
      // window, so its ‖row‖₂² is conv(1, W²) at (o, h, w): padding taps do not count.
      std::vector<float> sq = host_floats(n.weight);
      for (float& v : sq) v *= v;
      const std::vector<float> ones(static_cast<std::size_t>(shape_numel(s)), 1.0f);
      n.row_norm.assign(static_cast<std::size_t>(geo.out_channels * oh * ow), 0.0f);
      kernels::cpu::conv2d_forward(geo, ones.data(), sq.data(), nullptr, n.row_norm.data());
      for (float& v : n.row_norm) v = std::sqrt(std::max(v, 0.0f));
    }
    return push(std::move(n));
  }

  Graph m_graph;
};

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
  Builder b(device);
  const int in = b.input(example_shape);
  b.visit(model, "", in);
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
