// The CROWN backward pass (Zhang et al. 2018, Thm 3.2; for ReLU with parallel lower lines it is
// the dual network of Wong & Kolter 2018, Thm 1). For a linear function Λ_k·z_k of node k it
// keeps, per row, Λ_i at every node i and a constant c, with Λ_k·z_k ≥ Σ Λ_i·z_i + c, and walks
// the nodes from k down to the input:
//   Linear  z = Wa + b:        Λ_a += ΛW,        c += Λb;
//   Conv2d  z = conv(a) + b:   Λ_a += convᵀ(Λ) (the convolution's backward-data map), c += Λb;
//   activation z = f(a), lines lo(a) ≤ f(a) ≤ up(a):
//                              Λ_a += Λ⁺∘lo_slope + Λ⁻∘up_slope, c += Λ⁺·lo_icpt + Λ⁻·up_icpt;
//   reshape:                   Λ_a += Λ (reshaped);
//   average pooling:           Λ_a += poolᵀ(Λ) (its adjoint, through the autograd tape);
//   add z = a + b:             Λ_a += Λ, Λ_b += Λ;
// nodes are visited in decreasing index, so every Λ_i is complete (all its consumers have larger
// indices) before it moves on. At the input, min over B of Λ_0·x + c is concretized per example:
//   "linf": Σ_j (Λ_j ≥ 0 ? Λ_j lo_j : Λ_j hi_j) over B's box [lo, hi], which is exactly B;
//   "l2":   the larger of that box value and Λ_0·x0 − ε‖Λ_0‖₂ (Hölder: the ball's minimum),
//           both lower bounds because B lies in the box and in the ball.
// Matrix products run on the model's device; the elementwise line and concretization steps run
// on the host (a copy when the device is a GPU), one row per OpenMP iteration, in double.
#include <algorithm>
#include <cmath>

#include "certify/bounds_graph.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::certify::detail {

namespace {

Shape batched(std::int64_t n, const Shape& shape) {
  Shape s{n};
  s.insert(s.end(), shape.begin(), shape.end());
  return s;
}

void accumulate(std::vector<Tensor>& lam, const Graph& g, int j, const Tensor& t) {
  const Tensor v = t.reshape(batched(t.size(0), g.nodes[static_cast<std::size_t>(j)].shape));
  Tensor& slot = lam[static_cast<std::size_t>(j)];
  slot = slot.defined() ? ops::add(slot, v) : v;  // never in place: a Λ may be shared by two inputs
}

void add_column(std::vector<double>& bound, const Tensor& column) {
  const std::vector<float> c = host_floats(column);
  for (std::size_t r = 0; r < bound.size(); ++r) bound[r] += c[r];
}

Tensor through_lines(const Tensor& lam, std::int64_t specs, const Lines& ln, std::vector<double>& bound) {
  const Tensor h = lam.to(Device::cpu());
  Tensor out = Tensor::empty(h.shape());
  const std::int64_t rows = h.size(0), size = rows > 0 ? h.numel() / rows : 0;
  const float* pl = h.data<float>();
  float* po = out.data<float>();
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t base = (r / specs) * size;
    double c = 0.0;
    for (std::int64_t j = 0; j < size; ++j) {
      const float v = pl[r * size + j];
      const std::size_t k = static_cast<std::size_t>(base + j);
      if (v >= 0.0f) {
        po[r * size + j] = v * ln.lower_slope[k];
        c += static_cast<double>(v) * ln.lower_icpt[k];
      } else {
        po[r * size + j] = v * ln.upper_slope[k];
        c += static_cast<double>(v) * ln.upper_icpt[k];
      }
    }
    bound[static_cast<std::size_t>(r)] += c;
  }
  return out.to(lam.device());
}

void concretize(const Tensor& lam, std::int64_t specs, const InputSet& in, std::vector<double>& bound) {
  const Tensor h = lam.to(Device::cpu());
  const std::int64_t rows = h.size(0), d = in.d;
  const float* pl = h.data<float>();
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::size_t base = static_cast<std::size_t>((r / specs) * d);
    double box = 0.0, dot = 0.0, sq = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double v = pl[r * d + j];
      const std::size_t k = base + static_cast<std::size_t>(j);
      box += v * (v >= 0.0 ? in.lo_host[k] : in.hi_host[k]);
      dot += v * in.x0_host[k];
      sq += v * v;
    }
    bound[static_cast<std::size_t>(r)] += in.l2 ? std::max(box, dot - in.eps * std::sqrt(sq)) : box;
  }
}

Tensor pool_adjoint(const Node& nd, const Shape& in_shape, const Tensor& lam) {
  autograd::Var z(Tensor::zeros(batched(lam.size(0), in_shape), DType::F32, lam.device()), true);
  const autograd::Var y = nd.module->forward(z);
  autograd::backward(y, lam.reshape(y.shape()));
  return z.grad();
}

}  // namespace

std::vector<double> backward_lower(const Graph& g, int k, const Tensor& lambda, std::int64_t specs,
                                   const std::vector<Lines>& lines, const InputSet& input) {
  const std::int64_t rows = lambda.size(0);
  const Device dev = lambda.device();
  std::vector<double> bound(static_cast<std::size_t>(rows), 0.0);
  std::vector<Tensor> lam(static_cast<std::size_t>(k) + 1);
  accumulate(lam, g, k, lambda);
  for (int i = k; i >= 1; --i) {
    const Tensor l = lam[static_cast<std::size_t>(i)];
    if (!l.defined()) continue;
    lam[static_cast<std::size_t>(i)] = Tensor();
    const Node& nd = g.nodes[static_cast<std::size_t>(i)];
    const int a = nd.inputs[0];
    const Shape& in_shape = g.nodes[static_cast<std::size_t>(a)].shape;
    switch (nd.kind) {
      case NodeKind::Linear: {
        const Tensor l2 = l.reshape({rows, nd.size});
        if (nd.bias.defined()) add_column(bound, ops::matmul(l2, nd.bias.reshape({nd.size, 1})));
        accumulate(lam, g, a, ops::matmul(l2, nd.weight));
        break;
      }
      case NodeKind::Conv2d: {
        if (nd.bias_map.defined()) add_column(bound, ops::matmul(l.reshape({rows, nd.size}), nd.bias_map));
        kernels::Conv2dGeometry geo = nd.geometry;
        geo.batch = rows;
        Tensor dx = Tensor::empty(batched(rows, in_shape), DType::F32, dev);
        AEGIS_DISPATCH(dev, conv2d_backward_data(geo, l.data<float>(), nd.weight.data<float>(), dx.data<float>()));
        accumulate(lam, g, a, dx);
        break;
      }
      case NodeKind::Activation:
        accumulate(lam, g, a, through_lines(l, specs, lines[static_cast<std::size_t>(i)], bound));
        break;
      case NodeKind::Reshape:
        accumulate(lam, g, a, l);
        break;
      case NodeKind::AvgPool:
        accumulate(lam, g, a, pool_adjoint(nd, in_shape, l));
        break;
      case NodeKind::Add:
        accumulate(lam, g, a, l);
        accumulate(lam, g, nd.inputs[1], l);
        break;
      case NodeKind::Input:
        break;
    }
  }
  if (lam[0].defined()) concretize(lam[0], specs, input, bound);
  return bound;
}

}  // namespace aegis::certify::detail
