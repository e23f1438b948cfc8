// GraphBuilder (certify/bounds_graph.h): the bound-propagation nodes, each with the constants its
// interval and backward steps need, formed once per graph.
#include <algorithm>
#include <cmath>

#include "certify/bounds_graph.h"

namespace aegis::certify::detail {

namespace {

constexpr std::int64_t kMaxDenseConvElements = std::int64_t{1} << 18;

}  // namespace

GraphBuilder::GraphBuilder(Device device) : m_device(device) {}

int GraphBuilder::input(const Shape& shape) {
  Node n;
  n.shape = shape;
  n.where = "the input";
  return push(std::move(n));
}

const Shape& GraphBuilder::shape_of(int i) const {
  return m_nodes[static_cast<std::size_t>(i)].shape;
}

Graph GraphBuilder::finish() {
  Graph g;
  g.nodes = std::move(m_nodes);
  g.device = m_device;
  return g;
}

Node GraphBuilder::make(NodeKind kind, std::vector<int> inputs, Shape shape, const std::string& where) const {
  Node n;
  n.kind = kind;
  n.inputs = std::move(inputs);
  n.shape = std::move(shape);
  n.where = where;
  return n;
}

int GraphBuilder::push(Node n) {
  n.size = shape_numel(n.shape);
  m_nodes.push_back(std::move(n));
  return static_cast<int>(m_nodes.size()) - 1;
}

// Whether node i is the input seen through reshapes.
bool GraphBuilder::is_input(int i) const {
  while (m_nodes[static_cast<std::size_t>(i)].kind == NodeKind::Reshape)
    i = m_nodes[static_cast<std::size_t>(i)].inputs[0];
  return i == 0;
}

void GraphBuilder::set_weights(Node& n, const Tensor& w, const Tensor& b) {
  n.weight = w.to(m_device);
  std::vector<float> host = host_floats(n.weight);
  for (float& v : host) v = std::fabs(v);
  n.abs_weight = device_tensor(host, n.weight.shape(), m_device);
  if (b.defined()) n.bias = b.to(m_device);
}

int GraphBuilder::linear(const Tensor& w, const Tensor& b, int in, const std::string& where) {
  const Shape& s = shape_of(in);
  AEGIS_CHECK_AS(ShapeError, s.size() == 1 && s[0] == w.size(1),
                 where << " expects " << w.size(1) << " input features but receives one-example shape " << shape_str(s)
                       << " (a Flatten may be missing)");
  Node n = make(NodeKind::Linear, {in}, {w.size(0)}, where);
  set_weights(n, w, b);
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

int GraphBuilder::conv(const Tensor& w, const Tensor& b, const nn::Conv2dOptions& options, int in,
                       const std::string& where) {
  const Shape& s = shape_of(in);
  AEGIS_CHECK_AS(
      ShapeError, s.size() == 3 && s[0] == w.size(1),
      where << " expects [" << w.size(1) << ", H, W] inputs but receives one-example shape " << shape_str(s));
  kernels::Conv2dGeometry geo;
  geo.batch = 1;
  geo.in_channels = s[0];
  geo.height = s[1];
  geo.width = s[2];
  geo.out_channels = w.size(0);
  geo.kernel_h = w.size(2);
  geo.kernel_w = w.size(3);
  geo.stride = options.stride;
  geo.padding = options.padding;
  geo.dilation = options.dilation;  // the kernels below take it; the adjoint shortcut does not
  AEGIS_CHECK_AS(ShapeError,
                 geo.height + 2 * geo.padding >= geo.extent_h() && geo.width + 2 * geo.padding >= geo.extent_w(),
                 where << ": the kernel does not fit the input " << shape_str(s));
  const std::int64_t oh = geo.out_height(), ow = geo.out_width();
  Node n = make(NodeKind::Conv2d, {in}, {geo.out_channels, oh, ow}, where);
  n.geometry = geo;
  set_weights(n, w, b);
  if (n.bias.defined()) {
    const std::vector<float> bh = host_floats(n.bias);
    std::vector<float> map(static_cast<std::size_t>(geo.out_channels * oh * ow));
    for (std::size_t i = 0; i < map.size(); ++i) map[i] = bh[i / static_cast<std::size_t>(oh * ow)];
    n.bias_map = device_tensor(map, {static_cast<std::int64_t>(map.size()), 1}, m_device);
  }
  if (geo.stride == 1 && geo.dilation == 1 && geo.kernel_h == geo.kernel_w && geo.padding <= geo.kernel_h - 1) {
    // convᵀ as a convolution (bounds_linear.cpp): W'[c, o, a, b] = W[o, c, k−1−a, k−1−b].
    const std::vector<float> wh = host_floats(n.weight);
    const std::int64_t kk = geo.kernel_h, o_n = geo.out_channels, c_n = geo.in_channels;
    std::vector<float> flipped(wh.size());
    for (std::int64_t o = 0; o < o_n; ++o)
      for (std::int64_t c = 0; c < c_n; ++c)
        for (std::int64_t a = 0; a < kk; ++a)
          for (std::int64_t bb = 0; bb < kk; ++bb)
            flipped[static_cast<std::size_t>(((c * o_n + o) * kk + a) * kk + bb)] =
                wh[static_cast<std::size_t>(((o * c_n + c) * kk + (kk - 1 - a)) * kk + (kk - 1 - bb))];
    n.adjoint_weight = device_tensor(flipped, {c_n, o_n, kk, kk}, m_device);
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
      n.dense_transposed = device_tensor(cols, {in_size, out_size}, m_device);
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

int GraphBuilder::activation(kernels::Activation f, int in, const std::string& where) {
  Node n = make(NodeKind::Activation, {in}, shape_of(in), where);
  n.activation = f;
  return push(std::move(n));
}

int GraphBuilder::reshape(const Shape& shape, int in, const std::string& where) {
  AEGIS_CHECK_AS(ShapeError, shape_numel(shape) == shape_numel(shape_of(in)),
                 where << " reshapes " << shape_str(shape_of(in)) << " to " << shape_str(shape)
                       << ", which holds a different number of elements");
  return push(make(NodeKind::Reshape, {in}, shape, where));
}

kernels::Pool2dGeometry GraphBuilder::pool_geometry(const nn::Pool2dOptions& options, int in,
                                                    const std::string& where) const {
  const Shape& s = shape_of(in);
  AEGIS_CHECK_AS(ShapeError, s.size() == 3, where << " needs [C, H, W] inputs, receives " << shape_str(s));
  kernels::Pool2dGeometry geo;
  geo.batch = 1;
  geo.channels = s[0];
  geo.height = s[1];
  geo.width = s[2];
  geo.kernel = options.kernel;
  geo.stride = options.stride;
  geo.padding = options.padding;
  geo.ceil_mode = options.ceil_mode;
  geo.count_include_pad = options.count_include_pad;
  const std::int64_t kernel = geo.kernel, stride = geo.stride, padding = geo.padding;
  AEGIS_CHECK_AS(ShapeError,
                 kernel >= 1 && stride >= 1 && padding >= 0 && padding < kernel && geo.out_height() >= 1 &&
                     geo.out_width() >= 1 && s[1] + 2 * padding >= kernel && s[2] + 2 * padding >= kernel,
                 where << ": kernel " << kernel << ", stride " << stride << " and padding " << padding
                       << " do not fit the input " << shape_str(s));
  return geo;
}

int GraphBuilder::avg_pool(const nn::Pool2dOptions& options, int in, const std::string& where) {
  const kernels::Pool2dGeometry geo = pool_geometry(options, in, where);
  Node n = make(NodeKind::AvgPool, {in}, {geo.channels, geo.out_height(), geo.out_width()}, where);
  n.pool = geo;
  return push(std::move(n));
}

int GraphBuilder::max_pool(const nn::Pool2dOptions& options, int in, const std::string& where) {
  const kernels::Pool2dGeometry geo = pool_geometry(options, in, where);
  Node n = make(NodeKind::MaxPool, {in}, {geo.channels, geo.out_height(), geo.out_width()}, where);
  n.pool = geo;
  return push(std::move(n));
}

int GraphBuilder::add(int a, int b, const std::string& where) {
  AEGIS_CHECK_AS(
      ShapeError, shape_of(a) == shape_of(b),
      where << " adds " << shape_str(shape_of(a)) << " and " << shape_str(shape_of(b)) << ", which need equal shapes");
  return push(make(NodeKind::Add, {a, b}, shape_of(a), where));
}

int GraphBuilder::channel_affine(const std::vector<float>& scale, const std::vector<float>& shift, int in,
                                 const std::string& where) {
  const Shape& s = shape_of(in);
  AEGIS_CHECK_AS(
      ShapeError, !s.empty() && scale.size() == shift.size() && static_cast<std::int64_t>(scale.size()) == s[0],
      where << " has " << scale.size() << " scales and " << shift.size() << " shifts for inputs " << shape_str(s));
  Node n = make(NodeKind::ChannelAffine, {in}, s, where);
  const std::int64_t plane = shape_numel(s) / s[0];
  n.scale.resize(static_cast<std::size_t>(shape_numel(s)));
  n.shift.resize(n.scale.size());
  for (std::size_t i = 0; i < n.scale.size(); ++i) {
    n.scale[i] = scale[i / static_cast<std::size_t>(plane)];
    n.shift[i] = shift[i / static_cast<std::size_t>(plane)];
  }
  return push(std::move(n));
}

int GraphBuilder::concat(const std::vector<int>& inputs, const std::string& where) {
  AEGIS_CHECK_AS(ShapeError, !inputs.empty(), where << " concatenates nothing");
  Shape out = shape_of(inputs[0]);
  AEGIS_CHECK_AS(ShapeError, !out.empty(), where << " needs inputs with channels, receives a scalar");
  out[0] = 0;
  std::vector<std::int64_t> blocks;
  for (int i : inputs) {
    Shape a = shape_of(i), rest_a(a.begin() + (a.empty() ? 0 : 1), a.end()), rest(out.begin() + 1, out.end());
    AEGIS_CHECK_AS(ShapeError, !a.empty() && rest_a == rest,
                   where << " concatenates " << shape_str(shape_of(inputs[0])) << " and " << shape_str(a)
                         << ", which differ outside the channels");
    out[0] += a[0];
    blocks.push_back(shape_numel(a));
  }
  Node n = make(NodeKind::Concat, inputs, out, where);
  n.blocks = std::move(blocks);
  return push(std::move(n));
}

}  // namespace aegis::certify::detail
