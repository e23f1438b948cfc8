// Interval bound propagation, one node at a time (Gowal et al. 2018, Eq. 6), on the model's
// device through the BLAS, convolution and activation kernels:
//   affine z' = Wz + b:   μ = (u + l)/2, r = (u − l)/2, μ' = Wμ + b, r' = |W|r, [μ' − r', μ' + r'];
//   monotone activation:  [f(l), f(u)];
//   average pooling:      [pool(l), pool(u)] (nonnegative weights, padding a constant 0);
//   max pooling:          [maxpool(l), maxpool(u)] (monotone in every input);
//   add:                  [l_a + l_b, u_a + u_b];
//   per-channel affine:   [l·s + b, u·s + b] for s ≥ 0, [u·s + b, l·s + b] for s < 0;
//   concatenation:        the inputs' boxes concatenated;
// and, for "l2", an affine layer reading the input z = x is also bounded over the ball itself,
//   Wx0 + b ± ε‖W_i‖₂ (Hölder: max over ‖δ‖₂ ≤ ε of W_iδ is ε‖W_i‖₂),
// and intersected with the box bound (the set B lies in both).
#include <algorithm>

#include "certify/bounds_graph.h"
#include "kernels/blas.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::certify::detail {

namespace {

Shape batched(std::int64_t n, const Shape& shape) {
  Shape s{n};
  s.insert(s.end(), shape.begin(), shape.end());
  return s;
}

// W·x (+ b) for x [n, *input shape], through the weight or its absolute value.
Tensor affine(const Node& nd, const Tensor& x, bool absolute, bool with_bias) {
  const Tensor& w = absolute ? nd.abs_weight : nd.weight;
  const bool bias = with_bias && nd.bias.defined();
  const std::int64_t n = x.size(0);
  const Device dev = x.device();
  if (nd.kind == NodeKind::Linear) {
    Tensor y = ops::matmul(x.reshape({n, w.size(1)}), w, false, true);
    if (bias) AEGIS_DISPATCH(dev, add_bias(y.data<float>(), nd.bias.data<float>(), n, nd.size));
    return y;
  }
  kernels::Conv2dGeometry geo = nd.geometry;
  geo.batch = n;
  Tensor y = Tensor::empty(batched(n, nd.shape), DType::F32, dev);
  AEGIS_DISPATCH(dev, conv2d_forward(geo, x.data<float>(), w.data<float>(), bias ? nd.bias.data<float>() : nullptr,
                                     y.data<float>()));
  return y;
}

Box affine_box(const Node& nd, const Box& in) {
  Tensor mu = ops::add(in.lower, in.upper);
  ops::scale_inplace(mu, 0.5f);
  Tensor r = in.upper.clone();
  ops::axpy(-1.0f, in.lower, r);
  ops::scale_inplace(r, 0.5f);
  Tensor center = affine(nd, mu, false, true);
  const Tensor radius = affine(nd, r, true, false);
  Box out{center.clone(), center};
  ops::axpy(-1.0f, radius, out.lower);
  ops::axpy(1.0f, radius, out.upper);
  return out;
}

void tighten_by_ball(const Node& nd, const InputSet& input, Box& box) {
  const std::vector<float> c = host_floats(affine(nd, input.x0, false, true));
  std::vector<float> lo(c.size()), hi(c.size());
  const std::size_t size = nd.row_norm.size();
  for (std::size_t i = 0; i < c.size(); ++i) {
    const double r = input.eps * nd.row_norm[i % size];
    lo[i] = static_cast<float>(c[i] - r);
    hi[i] = static_cast<float>(c[i] + r);
  }
  intersect(box, lo, hi);
}

Tensor pool_map(const Node& nd, const Tensor& x) {
  kernels::Pool2dGeometry geo = nd.pool;
  geo.batch = x.size(0);
  Tensor y = Tensor::empty(batched(geo.batch, nd.shape), DType::F32, x.device());
  if (nd.kind == NodeKind::AvgPool)
    AEGIS_DISPATCH(x.device(), avg_pool2d_forward(geo, x.data<float>(), y.data<float>()));
  else
    AEGIS_DISPATCH(x.device(), max_pool2d_forward(geo, x.data<float>(), y.data<float>(), nullptr));
  return y;
}

Box channel_affine_box(const Node& nd, const Box& a) {
  std::vector<float> l = host_floats(a.lower), u = host_floats(a.upper);
  const std::size_t size = nd.scale.size();
  for (std::size_t i = 0; i < l.size(); ++i) {
    const float s = nd.scale[i % size], b = nd.shift[i % size];
    const float lo = (s >= 0.0f ? l[i] : u[i]) * s + b, hi = (s >= 0.0f ? u[i] : l[i]) * s + b;
    l[i] = lo;
    u[i] = hi;
  }
  return {device_tensor(l, a.lower.shape(), a.lower.device()), device_tensor(u, a.upper.shape(), a.upper.device())};
}

Box concat_box(const Graph& g, const Node& nd, const std::vector<Box>& boxes, std::int64_t n) {
  std::vector<float> l(static_cast<std::size_t>(n * nd.size)), u(l.size());
  std::int64_t offset = 0;
  for (std::size_t k = 0; k < nd.inputs.size(); ++k) {
    const Box& b = boxes[static_cast<std::size_t>(nd.inputs[k])];
    const std::vector<float> bl = host_floats(b.lower), bu = host_floats(b.upper);
    const std::int64_t block = nd.blocks[k];
    for (std::int64_t e = 0; e < n; ++e) {
      std::copy(bl.begin() + e * block, bl.begin() + (e + 1) * block, l.begin() + e * nd.size + offset);
      std::copy(bu.begin() + e * block, bu.begin() + (e + 1) * block, u.begin() + e * nd.size + offset);
    }
    offset += block;
  }
  return {device_tensor(l, batched(n, nd.shape), g.device), device_tensor(u, batched(n, nd.shape), g.device)};
}

Tensor activation_map(kernels::Activation f, const Tensor& x) {
  Tensor y = Tensor::empty_like(x);
  AEGIS_DISPATCH(x.device(), activation_forward(f, x.data<float>(), y.data<float>(), x.numel()));
  return y;
}

}  // namespace

Box interval_step(const Graph& g, int i, const std::vector<Box>& boxes, const InputSet& input) {
  const Node& nd = g.nodes[static_cast<std::size_t>(i)];
  if (nd.kind == NodeKind::Input) return input.box;
  const Box& a = boxes[static_cast<std::size_t>(nd.inputs[0])];
  switch (nd.kind) {
    case NodeKind::Linear:
    case NodeKind::Conv2d: {
      Box out = affine_box(nd, a);
      if (input.l2 && nd.reads_input) tighten_by_ball(nd, input, out);
      return out;
    }
    case NodeKind::Activation:
      return {activation_map(nd.activation, a.lower), activation_map(nd.activation, a.upper)};
    case NodeKind::Reshape: {
      const Shape s = batched(input.n, nd.shape);
      return {a.lower.reshape(s), a.upper.reshape(s)};
    }
    case NodeKind::AvgPool:
    case NodeKind::MaxPool:
      return {pool_map(nd, a.lower), pool_map(nd, a.upper)};
    case NodeKind::ChannelAffine:
      return channel_affine_box(nd, a);
    case NodeKind::Concat:
      return concat_box(g, nd, boxes, input.n);
    case NodeKind::Add: {
      const Box& b = boxes[static_cast<std::size_t>(nd.inputs[1])];
      return {ops::add(a.lower, b.lower), ops::add(a.upper, b.upper)};
    }
    case NodeKind::Input:
      break;
  }
  return input.box;
}

}  // namespace aegis::certify::detail
