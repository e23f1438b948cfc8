// The CROWN backward pass (Zhang et al. 2018, Thm 3.2; for ReLU with parallel lower lines it is
// the dual network of Wong & Kolter 2018, Thm 1). For a linear function Λ_k·z_k of node k it
// keeps, per row, Λ_i at every node i and a constant c, with Λ_k·z_k ≥ Σ Λ_i·z_i + c, and walks
// the nodes from k down to the input:
//   Linear  z = Wa + b:        Λ_a += ΛW,        c += Λb;
//   Conv2d  z = conv(a) + b:   Λ_a += convᵀ(Λ) (the convolution's adjoint), c += Λb;
//   activation z = f(a), lines lo(a) ≤ f(a) ≤ up(a):
//                              Λ_a += Λ⁺∘lo_slope + Λ⁻∘up_slope, c += Λ⁺·lo_icpt + Λ⁻·up_icpt;
//   reshape:                   Λ_a += Λ (reshaped);
//   average pooling:           Λ_a += poolᵀ(Λ) (its adjoint, the pooling kernels' backward);
//   add z = a + b:             Λ_a += Λ, Λ_b += Λ;
//   per-channel affine z = a·s + t:  Λ_a += Λ∘s, c += Λ·t;
//   concatenation z = [a; b; …]:     Λ_a += Λ's block of a, and so on (a linear split);
//   max pooling, lines z ≥ a_lo and z ≤ a_up or z ≤ U (relax_max_pool):
//                              Λ_a[lo] += Λ⁺, Λ_a[up] += Λ⁻ or c += Λ⁻·U;
// nodes are visited in decreasing index, so every Λ_i is complete (all its consumers have larger
// indices, and each consumer adds its share: a node read by several nodes — a DAG — gets the sum)
// before it moves on. At the input, min over B of Λ_0·x + c is concretized per example:
//   "linf": Σ_j (Λ_j ≥ 0 ? Λ_j lo_j : Λ_j hi_j) over B's box [lo, hi], which is exactly B;
//   "l2":   the larger of that box value and Λ_0·x0 − ε‖Λ_0‖₂ (Hölder: the ball's minimum),
//           both lower bounds because B lies in the box and in the ball.
// All rows of a pass move together, as matrix products over [rows, layer size] (BLAS for Linear,
// the convolution kernels for Conv2d). Above the first activation Λ does not depend on the
// example, so rows shared by every example (BackwardRows::shared) cross those layers once for the
// whole batch, and a mirrored pair ±e_j as one row (negation is exact in floating point); they
// are expanded to one row per (example, spec) at the first activation. A stride-1 convolution's
// adjoint is itself a convolution — convᵀ(Λ)[c, u, v] = Σ W[o, c, k−1−a, k−1−b]·Λ[o, u − P + a,
// v − P + b] with P = k − 1 − p — and runs through the forward kernels (Winograd or direct on
// the CPU), which beat the im2col/col2im backward-data path on these many-row batches; a
// convolution with few input channels on a small plane uses its dense matrix instead (Node::
// dense_transposed, one BLAS product), other strides the backward-data kernel. The
// elementwise line and concretization steps run on the host (a copy when the device is a GPU),
// in place on the pass's own Λ, one row per OpenMP iteration, the constants summed in double
// (bias products in float blocks of 256 terms).
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

// A node's Λ during a pass: one row per (example, spec), or (shared) the pass's shared rows.
struct Slot {
  Tensor t;
  bool shared = false;
};

struct Pass {
  const Graph& g;
  const InputSet& in;
  std::int64_t specs = 0;        // rows per example once expanded
  std::int64_t shared_rows = 0;  // rows while shared
  bool mirrored = false;
  std::vector<double> bound;         // [N·specs]
  std::vector<double> shared_bound;  // [shared_rows]
  std::vector<Slot> lam;
};

// Shared rows [R, ...] → one row per (example, spec) [N·S, ...]: each example's rows are the R
// rows, followed by their negations when mirrored.
Tensor expand(const Pass& p, const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  const std::int64_t r = h.size(0), size = r > 0 ? h.numel() / r : 0;
  Shape s = h.shape();
  s[0] = p.in.n * p.specs;
  Tensor out = Tensor::empty(s);
  const float* src = h.data<float>();
  float* dst = out.data<float>();
#pragma omp parallel for schedule(static)
  for (std::int64_t e = 0; e < p.in.n; ++e) {
    float* base = dst + e * p.specs * size;
    std::copy(src, src + r * size, base);
    if (p.mirrored)
      for (std::int64_t i = 0; i < r * size; ++i) base[r * size + i] = -src[i];
  }
  return out.to(t.device());
}

Slot expanded(const Pass& p, Slot s) {
  if (s.shared) s = {expand(p, s.t), false};
  return s;
}

// Λ_j += v, consuming v; every slot owns its storage, so the sum is formed in place.
void accumulate(Pass& p, int j, Slot v) {
  v.t = v.t.reshape(batched(v.t.size(0), p.g.nodes[static_cast<std::size_t>(j)].shape));
  Slot& slot = p.lam[static_cast<std::size_t>(j)];
  if (!slot.t.defined()) {
    slot = std::move(v);
    return;
  }
  if (slot.shared != v.shared) {
    slot = expanded(p, std::move(slot));
    v = expanded(p, std::move(v));
  }
  ops::add_inplace(slot.t, v.t);
}

// Λ·b for a per-row bias b [size] (one value per row), added to the rows' constants: a matrix
// product on a GPU, one pass over Λ on the CPU (a gemm with one column would pack all of Λ first).
constexpr std::int64_t kBlock = 256;

void add_bias(Pass& p, const Slot& s, const Tensor& lam, const Tensor& b) {
  std::vector<double>& bound = s.shared ? p.shared_bound : p.bound;
  const std::int64_t rows = lam.size(0), size = rows > 0 ? lam.numel() / rows : 0;
  if (!lam.device().is_cpu()) {
    const std::vector<float> c = host_floats(ops::matmul(lam.reshape({rows, size}), b.reshape({size, 1})));
    for (std::size_t r = 0; r < bound.size(); ++r) bound[r] += c[r];
    return;
  }
  const float* pl = lam.data<float>();
  const float* pb = b.data<float>();
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = pl + r * size;
    double c = 0.0;
    for (std::int64_t j0 = 0; j0 < size; j0 += kBlock) {  // float partial sums of kBlock terms
      float part = 0.0f;
      const std::int64_t j1 = std::min(size, j0 + kBlock);
#pragma omp simd reduction(+ : part)
      for (std::int64_t j = j0; j < j1; ++j) part += row[j] * pb[j];
      c += part;
    }
    bound[static_cast<std::size_t>(r)] += c;
  }
}

// Λ ← Λ⁺∘lo_slope + Λ⁻∘up_slope in place, constants += Λ⁺·lo_icpt + Λ⁻·up_icpt. The slopes
// are a vectorizable pass over the row; the constants visit only the neurons of the row's example
// with a nonzero intercept (for ReLU, the unstable ones: both lines of a stable neuron pass
// through 0).
Tensor through_lines(Pass& p, Tensor lam, const Lines& ln) {
  Tensor h = lam.to(Device::cpu());
  const std::int64_t rows = h.size(0), size = rows > 0 ? h.numel() / rows : 0, specs = p.specs;
  float* pl = h.data<float>();
  double* bound = p.bound.data();
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t e = r / specs;
    const std::size_t base = static_cast<std::size_t>(e * size);
    const float* lo_s = ln.lower_slope.data() + base;
    const float* lo_c = ln.lower_icpt.data() + base;
    const float* up_s = ln.upper_slope.data() + base;
    const float* up_c = ln.upper_icpt.data() + base;
    float* row = pl + r * size;
    double c = 0.0;
    for (const std::int64_t j : ln.with_icpt[static_cast<std::size_t>(e)])
      c += static_cast<double>(row[j]) * (row[j] >= 0.0f ? lo_c[j] : up_c[j]);
#pragma omp simd
    for (std::int64_t j = 0; j < size; ++j) {
      const float v = row[j], lo = lo_s[j], up = up_s[j];  // both loaded: a select, not a branch
      row[j] = v * (v >= 0.0f ? lo : up);
    }
    bound[r] += c;
  }
  return h.to(lam.device());
}

void concretize(Pass& p, const Tensor& lam) {
  const Tensor h = lam.to(Device::cpu());
  const std::int64_t rows = h.size(0), d = p.in.d, specs = p.specs;
  const InputSet& in = p.in;
  const float* pl = h.data<float>();
  double* bound = p.bound.data();
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
    bound[r] += in.l2 ? std::max(box, dot - in.eps * std::sqrt(sq)) : box;
  }
}

Tensor conv_adjoint(const Node& nd, const Shape& in_shape, const Tensor& lam) {
  const std::int64_t rows = lam.size(0);
  const Device dev = lam.device();
  if (nd.dense_transposed.defined())
    return ops::matmul(lam.reshape({rows, nd.size}), nd.dense_transposed, false, true).reshape(batched(rows, in_shape));
  Tensor dx = Tensor::empty(batched(rows, in_shape), DType::F32, dev);
  if (nd.adjoint_weight.defined()) {
    kernels::Conv2dGeometry geo = nd.adjoint_geometry;
    geo.batch = rows;
    AEGIS_DISPATCH(dev,
                   conv2d_forward(geo, lam.data<float>(), nd.adjoint_weight.data<float>(), nullptr, dx.data<float>()));
  } else {
    kernels::Conv2dGeometry geo = nd.geometry;
    geo.batch = rows;
    AEGIS_DISPATCH(dev, conv2d_backward_data(geo, lam.data<float>(), nd.weight.data<float>(), dx.data<float>()));
  }
  return dx;
}

Tensor pool_adjoint(const Node& nd, const Shape& in_shape, const Tensor& lam) {
  kernels::Pool2dGeometry geo = nd.pool;
  geo.batch = lam.size(0);
  Tensor dx = Tensor::empty(batched(geo.batch, in_shape), DType::F32, lam.device());
  AEGIS_DISPATCH(lam.device(), avg_pool2d_backward(geo, lam.data<float>(), dx.data<float>()));
  return dx;
}

// Λ∘s per row (s repeats over the rows; shared rows stay shared).
Tensor scaled_rows(const Tensor& lam, const std::vector<float>& s) {
  Tensor h = lam.to(Device::cpu()).clone();
  const std::int64_t rows = h.size(0), size = static_cast<std::int64_t>(s.size());
  float* pl = h.data<float>();
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < size; ++j) pl[r * size + j] *= s[static_cast<std::size_t>(j)];
  return h.to(lam.device());
}

// Input k's block of every row of a Concat's Λ.
Tensor concat_block(const Node& nd, const Tensor& lam, std::size_t k) {
  const Tensor h = lam.to(Device::cpu());
  const std::int64_t rows = h.size(0), block = nd.blocks[k];
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < k; ++i) offset += nd.blocks[i];
  Tensor out = Tensor::empty({rows, block});
  const float* src = h.data<float>();
  float* dst = out.data<float>();
  for (std::int64_t r = 0; r < rows; ++r)
    std::copy(src + r * nd.size + offset, src + r * nd.size + offset + block, dst + r * block);
  return out.to(lam.device());
}

// Λ through a MaxPool's lines (per example: the rows are expanded), constants into the bound.
Tensor through_max_pool(Pass& p, const Node& nd, std::int64_t in_size, const Tensor& lam, const Lines& ln) {
  const Tensor h = lam.to(Device::cpu());
  const std::int64_t rows = h.size(0), size = nd.size, specs = p.specs;
  Tensor out = Tensor::zeros({rows, in_size});
  const float* src = h.data<float>();
  float* dst = out.data<float>();
  double* bound = p.bound.data();
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::size_t base = static_cast<std::size_t>((r / specs) * size);
    double c = 0.0;
    for (std::int64_t o = 0; o < size; ++o) {
      const float v = src[r * size + o];
      const std::size_t at = base + static_cast<std::size_t>(o);
      if (v >= 0.0f) {
        dst[r * in_size + ln.lower_index[at]] += v;
      } else if (ln.upper_index[at] >= 0) {
        dst[r * in_size + ln.upper_index[at]] += v;
      } else {
        c += static_cast<double>(v) * ln.upper_icpt[at];
      }
    }
    bound[r] += c;
  }
  return out.to(lam.device());
}

}  // namespace

std::vector<double> backward_lower(const Graph& g, int k, BackwardRows rows, const std::vector<Lines>& lines,
                                   const InputSet& input) {
  Pass p{g, input, 0, 0, false, {}, {}, {}};
  p.mirrored = rows.shared && rows.mirrored;
  p.shared_rows = rows.shared ? rows.lambda.size(0) : 0;
  p.specs = rows.shared ? p.shared_rows * (p.mirrored ? 2 : 1) : rows.specs;
  p.bound.assign(static_cast<std::size_t>(input.n * p.specs), 0.0);
  p.shared_bound.assign(static_cast<std::size_t>(p.shared_rows), 0.0);
  p.lam.resize(static_cast<std::size_t>(k) + 1);
  accumulate(p, k, {std::move(rows.lambda), rows.shared});
  for (int i = k; i >= 1; --i) {
    Slot l = std::move(p.lam[static_cast<std::size_t>(i)]);
    p.lam[static_cast<std::size_t>(i)] = Slot{};
    if (!l.t.defined()) continue;
    const Node& nd = g.nodes[static_cast<std::size_t>(i)];
    const int a = nd.inputs[0];
    const Shape& in_shape = g.nodes[static_cast<std::size_t>(a)].shape;
    const std::int64_t r = l.t.size(0);
    switch (nd.kind) {
      case NodeKind::Linear: {
        const Tensor l2 = l.t.reshape({r, nd.size});
        if (nd.bias.defined()) add_bias(p, l, l2, nd.bias);
        accumulate(p, a, {ops::matmul(l2, nd.weight), l.shared});
        break;
      }
      case NodeKind::Conv2d:
        if (nd.bias_map.defined()) add_bias(p, l, l.t, nd.bias_map);
        accumulate(p, a, {conv_adjoint(nd, in_shape, l.t), l.shared});
        break;
      case NodeKind::Activation: {
        l = expanded(p, std::move(l));
        accumulate(p, a, {through_lines(p, std::move(l.t), lines[static_cast<std::size_t>(i)]), false});
        break;
      }
      case NodeKind::Reshape:
        accumulate(p, a, std::move(l));
        break;
      case NodeKind::Input:
        break;
      case NodeKind::AvgPool:
        accumulate(p, a, {pool_adjoint(nd, in_shape, l.t), l.shared});
        break;
      case NodeKind::Add:
        accumulate(p, nd.inputs[1], {l.t.clone(), l.shared});
        accumulate(p, a, std::move(l));
        break;
      case NodeKind::ChannelAffine: {
        const Tensor l2 = l.t.reshape({r, nd.size});
        add_bias(p, l, l2, device_tensor(nd.shift, {nd.size}, l.t.device()));
        accumulate(p, a, {scaled_rows(l2, nd.scale), l.shared});
        break;
      }
      case NodeKind::Concat: {
        const Tensor l2 = l.t.reshape({r, nd.size});
        for (std::size_t part = 0; part < nd.inputs.size(); ++part)
          accumulate(p, nd.inputs[part], {concat_block(nd, l2, part), l.shared});
        break;
      }
      case NodeKind::MaxPool: {
        l = expanded(p, std::move(l));
        const std::int64_t in_size = g.nodes[static_cast<std::size_t>(a)].size;
        accumulate(
            p, a,
            {through_max_pool(p, nd, in_size, l.t.reshape({l.t.size(0), nd.size}), lines[static_cast<std::size_t>(i)]),
             false});
        break;
      }
    }
  }
  Slot& x = p.lam[0];
  if (x.t.defined()) concretize(p, expanded(p, std::move(x)).t);
  // The shared rows' constants, copied to every example's rows (negated for the mirror rows).
  for (std::int64_t e = 0; e < input.n; ++e)
    for (std::int64_t s = 0; s < p.shared_rows; ++s) {
      const double c = p.shared_bound[static_cast<std::size_t>(s)];
      p.bound[static_cast<std::size_t>(e * p.specs + s)] += c;
      if (p.mirrored) p.bound[static_cast<std::size_t>(e * p.specs + p.shared_rows + s)] -= c;
    }
  return p.bound;
}

}  // namespace aegis::certify::detail
