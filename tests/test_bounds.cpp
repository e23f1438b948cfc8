// Tests of certify/bounds.h on small networks (MLP, strided and padded convolutions with average
// pooling, residual MLP and convolution blocks, tanh/sigmoid): the IBP and CROWN bounds contain
// the network's values at thousands of random points of the input set and at the ends of
// projected-gradient searches for every logit and margin; CROWN is never looser than IBP and
// much tighter on these networks; ε = 0 gives the network's value. Exact cases (hand-computed
// networks, single affine layers, the activation lines): test_bounds_exact.cpp. Verified
// accuracy, `aegis verify`, errors and the Residual module: test_bounds_verify.cpp.
#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "certify/bounds.h"
#include "nn/layers.h"
#include "nn/residual.h"
#include "runtime/ops.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::BoundMethod;
using certify::BoundOptions;
using nn::ModulePtr;

// Bound arithmetic and the forward pass are both float32 over a handful of layers of width ≤ 32,
// with differently ordered sums, so they agree to a few float ulps of the values involved.
double slack(double v) {
  return 1e-4 * (1.0 + std::fabs(v));
}

ModulePtr act(nn::ActivationKind k = nn::ActivationKind::ReLU) {
  return std::make_shared<nn::ActivationLayer>(k);
}

struct Net {
  std::string name;
  std::shared_ptr<nn::Module> model;
  Shape input;  // one example
};

std::vector<Net> networks(std::uint64_t seed) {
  nn::InitRng rng(seed);
  auto lin = [&](std::int64_t i, std::int64_t o) { return std::make_shared<nn::Linear>(i, o, rng); };
  auto conv = [&](std::int64_t i, std::int64_t o, std::int64_t k, std::int64_t s, std::int64_t p) {
    return std::make_shared<nn::Conv2d>(i, o, k, rng, nn::Conv2dOptions{s, p});
  };
  using Seq = nn::Sequential;
  std::vector<Net> nets;
  nets.push_back({"mlp",
                  std::make_shared<Seq>(std::vector<ModulePtr>{std::make_shared<nn::Flatten>(), lin(6, 12), act(),
                                                               lin(12, 10), act(), lin(10, 5)}),
                  {1, 2, 3}});
  nets.push_back(
      {"conv",
       std::make_shared<Seq>(std::vector<ModulePtr>{conv(2, 3, 3, 2, 1), act(), conv(3, 4, 2, 1, 1), act(),
                                                    std::make_shared<nn::AvgPool2d>(nn::Pool2dOptions{2, 2, 0}),
                                                    std::make_shared<nn::Flatten>(), lin(16, 5)}),
       {2, 7, 7}});
  nets.push_back(
      {"residual-mlp",
       std::make_shared<Seq>(std::vector<ModulePtr>{
           lin(6, 8), act(), std::make_shared<nn::Residual>(std::vector<ModulePtr>{lin(8, 8), act(), lin(8, 8)}), act(),
           lin(8, 4)}),
       {6}});
  nets.push_back(
      {"residual-conv",
       std::make_shared<Seq>(std::vector<ModulePtr>{
           conv(2, 3, 3, 1, 1), act(),
           std::make_shared<nn::Residual>(std::vector<ModulePtr>{conv(3, 3, 3, 1, 1), act(), conv(3, 3, 3, 1, 1)}),
           act(), std::make_shared<nn::AvgPool2d>(nn::Pool2dOptions{2, 2, 0}), std::make_shared<nn::Flatten>(),
           lin(27, 4)}),
       {2, 6, 6}});
  nets.push_back({"tanh-sigmoid-mlp",
                  std::make_shared<Seq>(std::vector<ModulePtr>{lin(5, 10), act(nn::ActivationKind::Tanh), lin(10, 8),
                                                               act(nn::ActivationKind::Sigmoid), lin(8, 3)}),
                  {5}});
  // Weights ×4 so that pre-activation intervals reach the curved, saturating parts of tanh and
  // sigmoid and straddle 0 (all three cases of their relaxation occur).
  for (nn::Var& p : nets.back().model->parameters()) ops::scale_inplace(p.mutable_value(), 4.0f);
  return nets;
}

Shape batched(std::int64_t n, const Shape& s) {
  Shape out{n};
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

std::vector<float> forward(nn::Module& m, const Tensor& x) {
  return m.forward(nn::Var(x)).value().to_vector<float>();
}

// `count` points of B around each row of x0, as [count·N, ...] with point t of example e at row
// t·N + e: for "linf" half uniform in the box, half its corners x0 ± ε; for "l2" half on the
// sphere, half inside the ball; then clipped to [0, 1] (which keeps a point of the ball in it,
// since the clip moves each coordinate towards x0 ∈ [0, 1]).
Tensor sample_set(const Tensor& x0, const std::string& norm, double eps, int count, std::uint64_t seed) {
  const std::vector<float> x = x0.to_vector<float>();
  const std::int64_t n = x0.size(0), d = x0.numel() / n;
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::normal_distribution<double> gauss;
  std::vector<float> out;
  for (int t = 0; t < count; ++t)
    for (std::int64_t e = 0; e < n; ++e) {
      std::vector<double> delta(static_cast<std::size_t>(d));
      if (norm == "linf") {
        for (double& v : delta) v = eps * (t % 2 ? uni(gen) : (uni(gen) < 0 ? -1.0 : 1.0));
      } else {
        double sq = 0.0;
        for (double& v : delta) {
          v = gauss(gen);
          sq += v * v;
        }
        const double r = t % 2 ? eps * std::pow(0.5 * (uni(gen) + 1.0), 1.0 / static_cast<double>(d)) : eps;
        for (double& v : delta) v *= r / std::sqrt(sq);
      }
      for (std::int64_t j = 0; j < d; ++j)
        out.push_back(static_cast<float>(
            std::clamp(x[static_cast<std::size_t>(e * d + j)] + delta[static_cast<std::size_t>(j)], 0.0, 1.0)));
    }
  return Tensor::from_vector(out, batched(count * n, Shape(x0.shape().begin() + 1, x0.shape().end())));
}

// Projected gradient search from `start` (rows as in sample_set, one row per objective) that
// maximizes coef[r]·f(x_r) over B of example r % N, with steps of ε/10 (sign steps for "linf",
// normalized steps for "l2"), projected back onto the ball and [0, 1].
Tensor gradient_search(nn::Module& m, const Tensor& x0, Tensor x, const Tensor& coef, const std::string& norm,
                       double eps) {
  const std::vector<float> c = x0.to_vector<float>();
  const std::int64_t n = x0.size(0), d = x0.numel() / n, rows = x.size(0);
  for (int step = 0; step < 40; ++step) {
    nn::Var xv(x, true);
    autograd::backward(m.forward(xv), coef);
    const std::vector<float> g = xv.grad().to_vector<float>();
    std::vector<float> v = x.to_vector<float>();
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::size_t base = static_cast<std::size_t>(r * d), cb = static_cast<std::size_t>((r % n) * d);
      double gn = 0.0, dn = 0.0;
      for (std::int64_t j = 0; j < d; ++j) gn += static_cast<double>(g[base + j]) * g[base + j];
      for (std::int64_t j = 0; j < d; ++j) {
        const double gj = g[base + j];
        const double s = norm == "linf" ? (gj > 0 ? 1.0 : gj < 0 ? -1.0 : 0.0) : (gn > 0 ? gj / std::sqrt(gn) : 0.0);
        v[base + j] = static_cast<float>(v[base + j] + eps / 10.0 * s);
        const double dj = v[base + j] - c[cb + j];
        dn += dj * dj;
      }
      const double shrink = norm == "l2" && dn > eps * eps ? eps / std::sqrt(dn) : 1.0;
      for (std::int64_t j = 0; j < d; ++j) {
        double dj = (v[base + j] - c[cb + j]) * shrink;
        if (norm == "linf") dj = std::clamp(dj, -eps, eps);
        v[base + j] = static_cast<float>(std::clamp(c[cb + j] + dj, 0.0, 1.0));
      }
    }
    x = Tensor::from_vector(v, x.shape());
  }
  return x;
}

struct Bounds {
  std::vector<float> lo, hi, margin;
};

Bounds bounds_of(nn::Module& m, const Tensor& x, const Tensor& y, const BoundOptions& o) {
  const certify::OutputBounds ob = certify::output_bounds(m, x, o);
  return {ob.lower.to_vector<float>(), ob.upper.to_vector<float>(),
          certify::margin_lower_bounds(m, x, y, o).to_vector<float>()};
}

// Every row of z (example r % N) lies in the bounds: logits in [lo, hi], margins above theirs.
void expect_contained(const std::vector<float>& z, std::int64_t n, std::int64_t k, const std::vector<std::int32_t>& y,
                      const Bounds& b, const std::string& what) {
  const std::int64_t rows = static_cast<std::int64_t>(z.size()) / k;
  int failures = 0;
  for (std::int64_t r = 0; r < rows && failures < 5; ++r) {
    const std::int64_t e = r % n;
    const std::size_t ye = static_cast<std::size_t>(y[static_cast<std::size_t>(e)]);
    for (std::int64_t c = 0; c < k; ++c) {
      const std::size_t at = static_cast<std::size_t>(e * k + c);
      const double v = z[static_cast<std::size_t>(r * k + c)];
      const double margin = z[static_cast<std::size_t>(r * k) + ye] - v;
      const bool ok = v >= b.lo[at] - slack(v) && v <= b.hi[at] + slack(v) &&
                      (static_cast<std::size_t>(c) == ye || margin >= b.margin[at] - slack(margin));
      if (!ok) {
        ++failures;
        ADD_FAILURE() << what << ": point " << r << " example " << e << " class " << c << ": logit " << v << " not in ["
                      << b.lo[at] << ", " << b.hi[at] << "] or margin " << margin << " < " << b.margin[at];
      }
    }
  }
}

TEST(Bounds, ContainRandomPointsAndGradientSearches) {
  for (Net& net : networks(11)) {
    const std::int64_t n = 3;
    const Tensor x = testing::random_tensor(batched(n, net.input), 4, 0.0f, 1.0f);
    const std::int64_t k = static_cast<std::int64_t>(forward(*net.model, x).size()) / n;
    std::vector<std::int32_t> labels;
    for (std::int64_t e = 0; e < n; ++e) labels.push_back(static_cast<std::int32_t>((e * 2 + 1) % k));
    const Tensor y = Tensor::from_vector(labels, {n});
    for (const std::string norm : {"linf", "l2"})
      for (const double eps : {0.02, 0.15, 0.5}) {
        const std::string tag = net.name + " " + norm + " eps " + std::to_string(eps);
        SCOPED_TRACE(tag);
        BoundOptions o{parse_norm(norm), eps, BoundMethod::Interval};
        const Bounds ibp = bounds_of(*net.model, x, y, o);
        o.method = BoundMethod::Linear;
        const Bounds crown = bounds_of(*net.model, x, y, o);
        o.relu = certify::ReluRelaxation::WongKolter;
        const Bounds wk = bounds_of(*net.model, x, y, o);
        const std::vector<float> z = forward(*net.model, sample_set(x, norm, eps, 2000, 7));
        // Objectives: maximize and minimize every logit, minimize every margin z_y − z_c.
        std::vector<float> coef;
        for (int obj = 0; obj < 3 * k; ++obj)
          for (std::int64_t e = 0; e < n; ++e)
            for (std::int64_t c = 0; c < k; ++c) {
              const std::int64_t ye = labels[static_cast<std::size_t>(e)];
              coef.push_back(obj < k       ? (c == obj ? 1.0f : 0.0f)
                             : obj < 2 * k ? (c == obj - k ? -1.0f : 0.0f)
                                           : (c == obj - 2 * k ? 1.0f : 0.0f) - (c == ye ? 1.0f : 0.0f));
            }
        const Tensor start = sample_set(x, norm, eps, 3 * static_cast<int>(k), 9);
        const Tensor found =
            gradient_search(*net.model, x, start, Tensor::from_vector(coef, {3 * k * n, k}), norm, eps);
        const std::vector<float> zs = forward(*net.model, found);
        for (const auto* b : {&ibp, &crown, &wk}) {
          const std::string which = b == &ibp ? "ibp" : b == &crown ? "crown" : "crown-wong-kolter";
          expect_contained(z, n, k, labels, *b, tag + " " + which + " random points");
          expect_contained(zs, n, k, labels, *b, tag + " " + which + " gradient search");
        }
        // The linear bound is never looser: exact by construction (intersection with the IBP box
        // of the same, tightened, layers), up to the float rounding of IBP from tighter boxes.
        for (const auto* b : {&crown, &wk})
          for (std::size_t i = 0; i < ibp.lo.size(); ++i) {
            EXPECT_GE(b->lo[i], ibp.lo[i] - slack(ibp.lo[i])) << i;
            EXPECT_LE(b->hi[i], ibp.hi[i] + slack(ibp.hi[i])) << i;
            if (std::isfinite(ibp.margin[i])) {
              EXPECT_GE(b->margin[i], ibp.margin[i] - slack(ibp.margin[i])) << i;
            }
          }
      }
  }
}

double total_width(const Bounds& b) {
  double w = 0.0;
  for (std::size_t i = 0; i < b.lo.size(); ++i) w += b.hi[i] - b.lo[i];
  return w;
}

TEST(Bounds, LinearBoundIsStrictlyTighter) {
  for (Net& net : networks(12)) {
    SCOPED_TRACE(net.name);
    const Tensor x = testing::random_tensor(batched(4, net.input), 5, 0.0f, 1.0f);
    const Tensor y = Tensor::from_vector(std::vector<std::int32_t>{0, 1, 2, 0}, {4});
    // ReLU networks at a radius where many neurons are undecided; the tanh/sigmoid network at a
    // small one, where its lines are close to the function and boxes still grow layer by layer.
    BoundOptions o{Norm::Linf, net.name == "tanh-sigmoid-mlp" ? 0.02 : 0.1, BoundMethod::Interval};
    const Bounds ibp = bounds_of(*net.model, x, y, o);
    o.method = BoundMethod::Linear;
    const Bounds crown = bounds_of(*net.model, x, y, o);
    // Measured: CROWN's total width is 0.23–0.42 of IBP's on these networks.
    EXPECT_LT(total_width(crown), 0.7 * total_width(ibp));
  }
}

TEST(Bounds, ZeroRadiusGivesTheNetworkValue) {
  for (Net& net : networks(13)) {
    SCOPED_TRACE(net.name);
    const Tensor x = testing::random_tensor(batched(5, net.input), 6, 0.0f, 1.0f);
    const std::vector<float> z = forward(*net.model, x);
    const std::int64_t k = static_cast<std::int64_t>(z.size()) / 5;
    const std::vector<std::int32_t> labels{0, 1, 2, 0, 1};
    for (const BoundMethod m : {BoundMethod::Interval, BoundMethod::Linear})
      for (const std::string norm : {"linf", "l2"}) {
        const Bounds b = bounds_of(*net.model, x, Tensor::from_vector(labels, {5}), BoundOptions{parse_norm(norm), 0.0, m});
        for (std::size_t i = 0; i < z.size(); ++i) {
          EXPECT_NEAR(b.lo[i], z[i], slack(z[i])) << i;
          EXPECT_NEAR(b.hi[i], z[i], slack(z[i])) << i;
          const std::size_t ye =
              (i / static_cast<std::size_t>(k)) * static_cast<std::size_t>(k) + labels[i / static_cast<std::size_t>(k)];
          if (i == ye) {
            EXPECT_TRUE(std::isinf(b.margin[i]) && b.margin[i] > 0);
          } else {
            EXPECT_NEAR(b.margin[i], z[ye] - z[i], slack(z[ye] - z[i])) << i;
          }
        }
      }
  }
}

TEST(Bounds, CudaMatchesCpu) {
  AEGIS_REQUIRE_GPU();
  std::vector<Net> cpu = networks(14), gpu = networks(14);
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    SCOPED_TRACE(cpu[i].name);
    gpu[i].model->to(Device::cuda());
    const Tensor x = testing::random_tensor(batched(3, cpu[i].input), 8, 0.0f, 1.0f);
    const Tensor y = Tensor::from_vector(std::vector<std::int32_t>{0, 1, 2}, {3});
    for (const std::string norm : {"linf", "l2"}) {
      const BoundOptions o{parse_norm(norm), 0.1, BoundMethod::Linear};
      SCOPED_TRACE(norm);
      EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
        const Bounds b = bounds_of(*(run.device().is_cuda() ? gpu : cpu)[i].model, x, y, o);
        // cuBLAS/cuDNN and OpenBLAS sum in different orders: float rounding of values ≤ ~10.
        run.check("lower", testing::flat_tensor(b.lo), {1e-4, 1e-4});
        run.check("upper", testing::flat_tensor(b.hi), {1e-4, 1e-4});
      }));
    }
  }
}

}  // namespace
}  // namespace aegis
