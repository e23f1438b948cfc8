// Bounds of general linear output specifications over general input boxes (certify/bounds.h,
// spec_lower_bounds): what a VNN-LIB property asks (certify/vnnlib_verify.cpp).
#include <algorithm>
#include <cmath>

#include "certify/bounds.h"
#include "certify/bounds_graph.h"

namespace aegis::certify {

namespace {

// IBP of spec·z: folded into a final Linear z = Wh + b (the row's Σ_k s_k(W_k h + b_k) bounded
// over h's box, as Gowal et al. 2018 elide the last layer), else Σ_k s_k·[l_k or u_k].
std::vector<double> interval_specs(const detail::Graph& g, const detail::Propagation& p, const std::vector<float>& spec,
                                   std::int64_t m) {
  const detail::Node& out = g.output();
  const std::int64_t k = out.size;
  std::vector<double> r(static_cast<std::size_t>(m), 0.0);
  const bool fold = out.kind == detail::NodeKind::Linear;
  const detail::Box& box = fold ? p.boxes[static_cast<std::size_t>(out.inputs[0])] : p.boxes.back();
  const std::vector<float> l = detail::host_floats(box.lower), u = detail::host_floats(box.upper);
  const std::vector<float> w = fold ? detail::host_floats(out.weight) : std::vector<float>{};
  const std::vector<float> b = fold && out.bias.defined() ? detail::host_floats(out.bias)
                                                          : std::vector<float>(static_cast<std::size_t>(k), 0.0f);
  const std::int64_t h = fold ? out.weight.size(1) : k;
  for (std::int64_t s = 0; s < m; ++s) {
    const float* row = spec.data() + s * k;
    double v = 0.0;
    for (std::int64_t j = 0; j < h; ++j) {
      double c = 0.0;
      if (fold) {
        for (std::int64_t q = 0; q < k; ++q) c += static_cast<double>(row[q]) * w[static_cast<std::size_t>(q * h + j)];
      } else {
        c = row[j];
      }
      v += c * (c >= 0.0 ? l[static_cast<std::size_t>(j)] : u[static_cast<std::size_t>(j)]);
    }
    if (fold)
      for (std::int64_t q = 0; q < k; ++q) v += static_cast<double>(row[q]) * b[static_cast<std::size_t>(q)];
    r[static_cast<std::size_t>(s)] = v;
  }
  return r;
}

}  // namespace

std::vector<double> spec_lower_bounds(nn::Module& model, const Tensor& lower, const Tensor& upper, const Tensor& spec,
                                      BoundMethod method, ReluRelaxation relu) {
  check_dtype(lower, DType::F32, "bound box lower");
  check_dtype(upper, DType::F32, "bound box upper");
  check_dtype(spec, DType::F32, "bound specification");
  AEGIS_CHECK_AS(ShapeError, lower.shape() == upper.shape(),
                 "bound box: lower " << lower.describe() << " and upper " << upper.describe() << " differ in shape");
  const std::vector<float> lo = lower.to_vector<float>(), hi = upper.to_vector<float>();
  for (std::size_t i = 0; i < lo.size(); ++i)
    AEGIS_CHECK(std::isfinite(lo[i]) && std::isfinite(hi[i]) && lo[i] <= hi[i],
                "bound box: element " << i << " has the interval [" << lo[i] << ", " << hi[i] << "]");
  nn::FrozenScope frozen(model);
  const std::vector<autograd::Var> params = model.parameters();
  const Device dev = params.empty() ? lower.device() : params.front().value().device();
  Shape batched{1};
  batched.insert(batched.end(), lower.shape().begin(), lower.shape().end());
  const Tensor l1 = lower.reshape(batched).to(dev), u1 = upper.reshape(batched).to(dev);
  const detail::Graph g = detail::build_graph(model, lower.shape(), dev);
  const std::int64_t k = g.output().size;
  AEGIS_CHECK_AS(
      ShapeError, spec.dim() == 2 && spec.size(1) == k,
      "bound specification " << spec.describe() << " must be [M, " << k << "] for a model with " << k << " outputs");
  const std::int64_t m = spec.size(0);
  if (m == 0) return {};
  const std::vector<float> rows = spec.to_vector<float>();
  BoundOptions o;
  o.method = method;
  o.relu = relu;
  const detail::InputSet in = detail::make_box_input_set(l1, u1);
  const detail::Propagation p = detail::propagate(g, in, o);
  std::vector<double> r = interval_specs(g, p, rows, m);
  if (method == BoundMethod::Linear) {
    const std::vector<double> linear = detail::spec_lower(
        g, static_cast<int>(g.nodes.size()) - 1, m,
        [&](std::int64_t, std::int64_t s, float* row) { std::copy(&rows[s * k], &rows[s * k] + k, row); }, p.lines, in);
    for (std::size_t s = 0; s < r.size(); ++s) r[s] = std::max(r[s], linear[s]);
  }
  return r;
}

}  // namespace aegis::certify
