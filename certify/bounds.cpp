// Output and margin bounds, and verified accuracy (certify/bounds.h). The forward sweep visits
// the nodes in order: every node gets its IBP box from its inputs' boxes; with the Linear method,
// a node that feeds an activation (or a max pooling) also gets the CROWN bound of each of its
// neurons that the box leaves undecided (a backward pass from that node with rows ±e_j), and its
// box becomes the intersection — so later boxes start from the tightened ones — and the
// activation's lines are formed from that box (as in CROWN, Zhang et al. 2018, bounds are
// computed layer by layer).
#include "certify/bounds.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "certify/bounds_graph.h"
#include "core/named_enum.h"
#include "nn/functional.h"

namespace aegis::certify {

using detail::Box;
using detail::Graph;
using detail::InputSet;
using detail::Lines;
using detail::Node;
using detail::NodeKind;

BoundMethod parse_bound_method(const std::string& name) {
  if (name == "ibp" || name == "interval") return BoundMethod::Interval;
  if (name == "crown" || name == "linear") return BoundMethod::Linear;
  AEGIS_THROW(InvalidArgument, "unknown bound method '" << name << "' (expected ibp or crown)");
}

const char* bound_method_name(BoundMethod method) {
  return method == BoundMethod::Interval ? "ibp" : "crown";
}

const char* relu_relaxation_name(ReluRelaxation relu) noexcept {
  return relu == ReluRelaxation::WongKolter ? "wong-kolter" : "adaptive";
}

ReluRelaxation parse_relu_relaxation(const std::string& name) {
  return parse_named(name, {ReluRelaxation::Adaptive, ReluRelaxation::WongKolter}, relu_relaxation_name,
                     "ReLU relaxation");
}

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

void check_options(const BoundOptions& o) {
  AEGIS_CHECK(std::isfinite(o.eps) && o.eps >= 0.0, "bound eps " << o.eps << " must be ≥ 0 and finite");
}

void check_input(const Tensor& x) {
  check_dtype(x, DType::F32, "bound input x");
  AEGIS_CHECK_AS(ShapeError, x.dim() >= 2, "bound input x must be [N, ...], got " << x.describe());
  const std::vector<float> v = x.to_vector<float>();
  const std::int64_t d = x.size(0) > 0 ? x.numel() / x.size(0) : 1;
  for (std::size_t i = 0; i < v.size(); ++i) {
    AEGIS_CHECK_AS(NumericError, std::isfinite(v[i]),
                   "bound input x: example " << i / d << " element " << i % d << " is " << v[i]);
    AEGIS_CHECK(v[i] >= 0.0f && v[i] <= 1.0f,
                "bound input x: example " << i / d << " element " << i % d << " = " << v[i] << " lies outside [0, 1]");
  }
}

Device model_device(const nn::Module& model, const Tensor& x) {
  const std::vector<autograd::Var> p = model.parameters();
  return p.empty() ? x.device() : p.front().value().device();
}

Graph graph_for(nn::Module& model, const Tensor& x, Device dev) {
  return detail::build_graph(model, Shape(x.shape().begin() + 1, x.shape().end()), dev);
}

std::int64_t widest_node(const Graph& g, int k) {
  std::int64_t widest = 1;
  for (int i = 0; i <= k; ++i) widest = std::max(widest, g.nodes[static_cast<std::size_t>(i)].size);
  return widest;
}

}  // namespace

std::vector<double> detail::spec_lower(const Graph& g, int k, std::int64_t specs, const SpecFill& fill,
                                       const std::vector<Lines>& lines, const InputSet& in) {
  const std::int64_t chunk =
      std::max<std::int64_t>(1, std::min(specs, kMaxLambdaElements / (in.n * widest_node(g, k))));
  const std::int64_t size = g.nodes[static_cast<std::size_t>(k)].size;
  std::vector<double> out(static_cast<std::size_t>(in.n * specs));
  for (std::int64_t s0 = 0; s0 < specs; s0 += chunk) {
    const std::int64_t c = std::min(chunk, specs - s0);
    std::vector<float> lam(static_cast<std::size_t>(in.n * c * size), 0.0f);
    for (std::int64_t e = 0; e < in.n; ++e)
      for (std::int64_t t = 0; t < c; ++t) fill(e, s0 + t, lam.data() + (e * c + t) * size);
    detail::BackwardRows rows{detail::device_tensor(lam, {in.n * c, size}, g.device), c};
    const std::vector<double> r = detail::backward_lower(g, k, std::move(rows), lines, in);
    for (std::int64_t e = 0; e < in.n; ++e)
      for (std::int64_t t = 0; t < c; ++t)
        out[static_cast<std::size_t>(e * specs + s0 + t)] = r[static_cast<std::size_t>(e * c + t)];
  }
  return out;
}

namespace {

// Linear lower and upper bounds of neurons j of node k for every example, [N·m] each in (e, j)
// order: the rows +e_j (lower) and −e_j (upper, negated), passed as shared, mirrored rows so that
// the layers above the first activation see each neuron once per batch; chunked as spec_lower.
void neuron_bounds(const Graph& g, int k, const std::vector<std::int64_t>& neurons, const std::vector<Lines>& lines,
                   const InputSet& in, std::vector<double>& lower, std::vector<double>& upper) {
  const std::int64_t m = static_cast<std::int64_t>(neurons.size());
  const std::int64_t chunk =
      std::max<std::int64_t>(1, std::min(m, kMaxLambdaElements / (2 * in.n * widest_node(g, k))));
  const std::int64_t size = g.nodes[static_cast<std::size_t>(k)].size;
  lower.assign(static_cast<std::size_t>(in.n * m), 0.0);
  upper.assign(lower.size(), 0.0);
  for (std::int64_t s0 = 0; s0 < m; s0 += chunk) {
    const std::int64_t c = std::min(chunk, m - s0);
    std::vector<float> lam(static_cast<std::size_t>(c * size), 0.0f);
    for (std::int64_t t = 0; t < c; ++t)
      lam[static_cast<std::size_t>(t * size + neurons[static_cast<std::size_t>(s0 + t)])] = 1.0f;
    detail::BackwardRows rows{detail::device_tensor(lam, {c, size}, g.device), 0, true, true};
    const std::vector<double> r = detail::backward_lower(g, k, std::move(rows), lines, in);
    for (std::int64_t e = 0; e < in.n; ++e)
      for (std::int64_t t = 0; t < c; ++t) {
        lower[static_cast<std::size_t>(e * m + s0 + t)] = r[static_cast<std::size_t>(e * 2 * c + t)];
        upper[static_cast<std::size_t>(e * m + s0 + t)] = -r[static_cast<std::size_t>(e * 2 * c + c + t)];
      }
  }
}

// Linear bounds of the undecided neurons of node p, intersected into its box.
void tighten_node(const Graph& g, int p, const std::vector<std::int64_t>& neurons, const std::vector<Lines>& lines,
                  const InputSet& in, Box& box) {
  if (neurons.empty()) return;
  const std::int64_t m = static_cast<std::int64_t>(neurons.size());
  const std::int64_t size = g.nodes[static_cast<std::size_t>(p)].size;
  std::vector<double> rl, ru;
  neuron_bounds(g, p, neurons, lines, in, rl, ru);
  std::vector<float> lo(static_cast<std::size_t>(in.n * size), -kInf), hi(lo.size(), kInf);
  for (std::int64_t e = 0; e < in.n; ++e)
    for (std::int64_t s = 0; s < m; ++s) {
      const std::size_t at = static_cast<std::size_t>(e * size + neurons[static_cast<std::size_t>(s)]);
      lo[at] = static_cast<float>(rl[static_cast<std::size_t>(e * m + s)]);
      hi[at] = static_cast<float>(ru[static_cast<std::size_t>(e * m + s)]);
    }
  detail::intersect(box, lo, hi);
}

}  // namespace

namespace detail {

Propagation propagate(const Graph& g, const InputSet& in, const BoundOptions& o) {
  const std::size_t count = g.nodes.size();
  // The activation and max-pooling nodes reading each node: their relaxations need its bounds.
  std::vector<std::vector<std::size_t>> consumers(count);
  for (std::size_t i = 0; i < count; ++i)
    if (g.nodes[i].kind == NodeKind::Activation || g.nodes[i].kind == NodeKind::MaxPool)
      consumers[static_cast<std::size_t>(g.nodes[i].inputs[0])].push_back(i);
  // Node i is exact already when it is one affine layer of the input (seen through reshapes):
  // IBP bounds W·x + b exactly over B's box ("linf"), and for "l2" it keeps the tighter of the
  // box and ball bounds, which is also what a backward pass would concretize.
  const auto exact = [&](std::size_t i) {
    while (g.nodes[i].kind == NodeKind::Reshape) i = static_cast<std::size_t>(g.nodes[i].inputs[0]);
    return g.nodes[i].kind == NodeKind::Input || g.nodes[i].reads_input;
  };
  Propagation p;
  p.boxes.resize(count);
  p.lines.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    p.boxes[i] = detail::interval_step(g, static_cast<int>(i), p.boxes, in);
    if (o.method != BoundMethod::Linear) continue;
    const Node& nd = g.nodes[i];
    if (nd.kind == NodeKind::Activation)
      p.lines[i] = detail::relax(nd.activation, p.boxes[static_cast<std::size_t>(nd.inputs[0])], o.relu);
    if (nd.kind == NodeKind::MaxPool)
      p.lines[i] = detail::relax_max_pool(nd, p.boxes[static_cast<std::size_t>(nd.inputs[0])]);
    if (consumers[i].empty() || exact(i)) continue;
    std::vector<std::int64_t> undecided;
    for (std::size_t c : consumers[i]) {
      const Node& user = g.nodes[c];
      const std::vector<std::int64_t> u = user.kind == NodeKind::MaxPool
                                              ? detail::undecided_pool_inputs(user, p.boxes[i])
                                              : detail::undecided_neurons(user.activation, p.boxes[i]);
      undecided.insert(undecided.end(), u.begin(), u.end());
    }
    std::sort(undecided.begin(), undecided.end());
    undecided.erase(std::unique(undecided.begin(), undecided.end()), undecided.end());
    tighten_node(g, static_cast<int>(i), undecided, p.lines, in, p.boxes[i]);
  }
  return p;
}

}  // namespace detail

namespace {

using detail::propagate;
using detail::Propagation;
using detail::spec_lower;

// IBP margins with the specification folded into the last layer (as Gowal et al. 2018 do): for a
// final Linear z = Wh + b, z_y − z_c = (W_y − W_c)h + b_y − b_c is bounded over h's box directly;
// otherwise l_y − u_c. Entry y is +∞.
std::vector<float> interval_margins(const Graph& g, const Propagation& p, const std::vector<std::int32_t>& y) {
  const Node& out = g.output();
  const std::int64_t n = static_cast<std::int64_t>(y.size()), k = out.size;
  std::vector<float> m(static_cast<std::size_t>(n * k), kInf);
  if (out.kind == NodeKind::Linear) {
    const Box& hb = p.boxes[static_cast<std::size_t>(out.inputs[0])];
    const std::vector<float> l = detail::host_floats(hb.lower), u = detail::host_floats(hb.upper);
    const std::vector<float> w = detail::host_floats(out.weight);
    const std::vector<float> b = out.bias.defined() ? detail::host_floats(out.bias) : std::vector<float>(k, 0.0f);
    const std::int64_t h = out.weight.size(1);
    for (std::int64_t e = 0; e < n; ++e) {
      const std::size_t ye = static_cast<std::size_t>(y[static_cast<std::size_t>(e)]);
      for (std::int64_t c = 0; c < k; ++c) {
        if (static_cast<std::size_t>(c) == ye) continue;
        double v = static_cast<double>(b[ye]) - b[static_cast<std::size_t>(c)];
        for (std::int64_t j = 0; j < h; ++j) {
          const double wj = static_cast<double>(w[ye * h + j]) - w[static_cast<std::size_t>(c * h + j)];
          v += wj * (wj >= 0.0 ? l[static_cast<std::size_t>(e * h + j)] : u[static_cast<std::size_t>(e * h + j)]);
        }
        m[static_cast<std::size_t>(e * k + c)] = static_cast<float>(v);
      }
    }
    return m;
  }
  const Box& ob = p.boxes.back();
  const std::vector<float> l = detail::host_floats(ob.lower), u = detail::host_floats(ob.upper);
  for (std::int64_t e = 0; e < n; ++e) {
    const std::size_t ye = static_cast<std::size_t>(e * k + y[static_cast<std::size_t>(e)]);
    for (std::int64_t c = 0; c < k; ++c)
      if (static_cast<std::size_t>(e * k + c) != ye)
        m[static_cast<std::size_t>(e * k + c)] = l[ye] - u[static_cast<std::size_t>(e * k + c)];
  }
  return m;
}

std::vector<std::int32_t> checked_labels(const Tensor& labels, std::int64_t n, std::int64_t k) {
  check_dtype(labels, DType::I32, "bound labels");
  check_shape(labels, {n}, "bound labels");
  std::vector<std::int32_t> y = labels.to_vector<std::int32_t>();
  for (std::size_t i = 0; i < y.size(); ++i)
    AEGIS_CHECK(y[i] >= 0 && y[i] < k,
                "bound labels: label " << y[i] << " of example " << i << " is outside [0, " << k << ")");
  return y;
}

// Margins of a batch already on the graph's device (x checked).
Tensor margins(const Graph& g, const Tensor& x, const std::vector<std::int32_t>& y, const BoundOptions& o) {
  const InputSet in = detail::make_input_set(x, o);
  const Propagation p = propagate(g, in, o);
  std::vector<float> m = interval_margins(g, p, y);
  const std::int64_t k = g.output().size;
  if (o.method == BoundMethod::Linear && k > 1) {
    // Rows e_y − e_c for the K − 1 classes c ≠ y, in class order.
    const std::vector<double> r = spec_lower(
        g, static_cast<int>(g.nodes.size()) - 1, k - 1,
        [&](std::int64_t e, std::int64_t s, float* row) {
          const std::int32_t ye = y[static_cast<std::size_t>(e)];
          row[ye] = 1.0f;
          row[s < ye ? s : s + 1] = -1.0f;
        },
        p.lines, in);
    for (std::int64_t e = 0; e < in.n; ++e)
      for (std::int64_t s = 0; s < k - 1; ++s) {
        const std::int64_t c = s < y[static_cast<std::size_t>(e)] ? s : s + 1;
        float& v = m[static_cast<std::size_t>(e * k + c)];
        v = std::max(v, static_cast<float>(r[static_cast<std::size_t>(e * (k - 1) + s)]));
      }
  }
  return Tensor::from_vector(m, {in.n, k});
}

}  // namespace

OutputBounds output_bounds(nn::Module& model, const Tensor& x, const BoundOptions& options) {
  check_options(options);
  check_input(x);
  nn::FrozenScope frozen(model);
  const Device dev = model_device(model, x);
  const Tensor xd = x.to(dev);
  const Graph g = graph_for(model, xd, dev);
  const std::int64_t n = x.size(0), k = g.output().size;
  if (n == 0) return {Tensor::zeros({0, k}), Tensor::zeros({0, k})};
  const InputSet in = detail::make_input_set(xd, options);
  const Propagation p = propagate(g, in, options);
  Box out = p.boxes.back();
  if (options.method == BoundMethod::Linear) {
    std::vector<std::int64_t> all(static_cast<std::size_t>(k));
    for (std::int64_t c = 0; c < k; ++c) all[static_cast<std::size_t>(c)] = c;
    std::vector<double> rl, ru;
    neuron_bounds(g, static_cast<int>(g.nodes.size()) - 1, all, p.lines, in, rl, ru);
    std::vector<float> lo(static_cast<std::size_t>(n * k)), hi(lo.size());
    for (std::size_t i = 0; i < lo.size(); ++i) {
      lo[i] = static_cast<float>(rl[i]);
      hi[i] = static_cast<float>(ru[i]);
    }
    detail::intersect(out, lo, hi);
  }
  return {out.lower.reshape({n, k}).to(Device::cpu()), out.upper.reshape({n, k}).to(Device::cpu())};
}

Tensor margin_lower_bounds(nn::Module& model, const Tensor& x, const Tensor& labels, const BoundOptions& options) {
  check_options(options);
  check_input(x);
  nn::FrozenScope frozen(model);
  const Device dev = model_device(model, x);
  const Tensor xd = x.to(dev);
  const Graph g = graph_for(model, xd, dev);
  const std::vector<std::int32_t> y = checked_labels(labels, x.size(0), g.output().size);
  if (x.size(0) == 0) return Tensor::zeros({0, g.output().size});
  return margins(g, xd, y, options);
}

VerifyResult verify(nn::Module& model, const Tensor& x, const Tensor& labels, const BoundOptions& options,
                    std::int64_t batch_size, const std::function<void(std::int64_t, std::int64_t)>& on_batch) {
  const auto t0 = std::chrono::steady_clock::now();
  check_options(options);
  AEGIS_CHECK(batch_size >= 1, "verify batch size " << batch_size << " must be at least 1");
  check_input(x);
  nn::FrozenScope frozen(model);
  const Device dev = model_device(model, x);
  const std::int64_t n = x.size(0);
  const Graph g = graph_for(model, x, dev);
  const std::int64_t k = g.output().size;
  const std::vector<std::int32_t> y = checked_labels(labels, n, k);
  std::vector<std::int32_t> verified(static_cast<std::size_t>(n), 0);
  std::vector<float> margin_lower(static_cast<std::size_t>(n), kInf);
  std::int64_t correct = 0, proven = 0;
  VerifyResult r;
  r.non_finite_parameters = nn::non_finite_parameters(model);
  const bool sound_weights = r.non_finite_parameters.empty();
  for (std::int64_t b = 0; b < n; b += batch_size) {
    const std::int64_t e = std::min(n, b + batch_size);
    const Tensor xb = x.rows(b, e).to(dev);
    const std::vector<std::int32_t> yb(y.begin() + b, y.begin() + e);
    const std::vector<std::int32_t> pred =
        nn::argmax(model.forward(autograd::Var(xb)).value()).to(Device::cpu()).to_vector<std::int32_t>();
    const std::vector<float> m = margins(g, xb, yb, options).to_vector<float>();
    for (std::int64_t i = 0; i < e - b; ++i) {
      const std::size_t si = static_cast<std::size_t>(i);
      const float worst = *std::min_element(m.begin() + i * k, m.begin() + (i + 1) * k);
      margin_lower[static_cast<std::size_t>(b + i)] = worst;
      if (pred[si] != yb[si]) continue;
      ++correct;
      // Every margin bound must be a finite number above 0 (c = y holds +∞). Written so that NaN,
      // for which every comparison is false, leaves the example unverified.
      bool all_positive = sound_weights;
      for (std::int64_t c = 0; c < k && all_positive; ++c) {
        const float v = m[static_cast<std::size_t>(i * k + c)];
        all_positive = c == yb[si] ? !std::isnan(v) : (std::isfinite(v) && v > 0.0f);
      }
      if (all_positive) {
        ++proven;
        verified[static_cast<std::size_t>(b + i)] = 1;
      }
    }
    if (on_batch) on_batch(e, n);
  }
  r.total = n;
  r.clean_accuracy = n > 0 ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
  r.verified_accuracy = n > 0 ? static_cast<double>(proven) / static_cast<double>(n) : 0.0;
  r.verified = Tensor::from_vector(verified, {n});
  r.margin_lower = Tensor::from_vector(margin_lower, {n});
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

VerifyResult verify(nn::Module& model, const nn::Dataset& data, const BoundOptions& options, std::int64_t batch_size,
                    const std::function<void(std::int64_t, std::int64_t)>& on_batch) {
  return verify(model, data.images, data.labels, options, batch_size, on_batch);
}

}  // namespace aegis::certify
