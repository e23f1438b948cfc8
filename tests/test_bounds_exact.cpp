// Exact cases of certify/bounds.h: hand-computed IBP and CROWN numbers for small ReLU networks
// (L∞ and L2, both ReLU lower lines, an intermediate bound that decides a neuron), single affine
// layers bounded exactly by both methods, and the activation lines of certify/bounds_relax.cpp
// enclosing (and touching) their functions.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "certify/bounds.h"
#include "certify/bounds_graph.h"
#include "nn/layers.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::BoundMethod;
using nn::ModulePtr;

// Float32 forward pass and bound arithmetic over one layer: a few ulps of the values involved.
double slack(double v) {
  return 1e-4 * (1.0 + std::fabs(v));
}

ModulePtr act() {
  return std::make_shared<nn::ActivationLayer>(nn::ActivationKind::ReLU);
}

Shape batched(std::int64_t n, const Shape& s) {
  Shape out{n};
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

std::vector<float> forward(nn::Module& m, const Tensor& x) {
  return m.forward(nn::Var(x)).value().to_vector<float>();
}

struct Net {
  std::string name;
  std::shared_ptr<nn::Module> model;
  Shape input;  // one example
};

struct Bounds {
  std::vector<float> lo, hi, margin;
};

Bounds bounds_of(nn::Module& m, const Tensor& x, const Tensor& y, const certify::BoundOptions& o) {
  const certify::OutputBounds ob = certify::output_bounds(m, x, o);
  return {ob.lower.to_vector<float>(), ob.upper.to_vector<float>(),
          certify::margin_lower_bounds(m, x, y, o).to_vector<float>()};
}

// x ∈ R², W1 = [[1, 1], [1, −1]], b1 = (0, 0.5), ReLU, W2 = [[1, −1], [−1, 1]], b2 = 0, around
// x0 = (0.5, 0.5). With B = [0, 1]² (L∞, ε = 0.5): z1 = x1 + x2 ∈ [0, 2] (active),
// z2 = x1 − x2 + 0.5 ∈ [−0.5, 1.5] (undecided: chord slope 0.75, intercept 0.375), h2 ∈ [0, 1.5].
std::shared_ptr<nn::Linear> fixed_linear(std::int64_t in, std::int64_t out, const std::vector<float>& w,
                                         const std::vector<float>& b) {
  nn::InitRng rng(0);
  auto l = std::make_shared<nn::Linear>(in, out, rng);
  nn::Var wv = l->weight(), bv = l->bias();
  wv.mutable_value() = Tensor::from_vector(w, {out, in});
  bv.mutable_value() = Tensor::from_vector(b, {out});
  return l;
}

std::shared_ptr<nn::Sequential> two_layer_net() {
  return std::make_shared<nn::Sequential>(std::vector<ModulePtr>{fixed_linear(2, 2, {1, 1, 1, -1}, {0, 0.5f}), act(),
                                                                 fixed_linear(2, 2, {1, -1, -1, 1}, {0, 0})});
}

TEST(BoundsExact, HandComputedTwoLayerNetwork) {
  auto net = two_layer_net();
  const Tensor x = Tensor::from_vector(std::vector<float>{0.5f, 0.5f}, {1, 2});
  const Tensor y0 = Tensor::from_vector(std::vector<std::int32_t>{0}, {1});
  const Tensor y1 = Tensor::from_vector(std::vector<std::int32_t>{1}, {1});
  const double tol = 1e-6;  // a few float operations on numbers of size ≤ 4
  // IBP: y1 = h1 − h2 ∈ [0 − 1.5, 2 − 0], y2 = −y1 ∈ [−2, 1.5]; margin y1 − y2 = 2h1 − 2h2
  // folded into the last layer: ≥ 0 − 3; margin y2 − y1 ≥ −4 + 0.
  Bounds b = bounds_of(*net, x, y0, {Norm::Linf, 0.5, BoundMethod::Interval});
  EXPECT_TRUE(testing::all_close(std::vector<double>(b.lo.begin(), b.lo.end()), {-1.5, -2.0}, 0, tol));
  EXPECT_TRUE(testing::all_close(std::vector<double>(b.hi.begin(), b.hi.end()), {2.0, 1.5}, 0, tol));
  EXPECT_NEAR(b.margin[1], -3.0, tol);
  EXPECT_NEAR(certify::margin_lower_bounds(*net, x, y1, {Norm::Linf, 0.5, BoundMethod::Interval}).to_vector<float>()[0],
              -4.0, tol);
  // CROWN, adaptive (u = 1.5 ≥ −l = 0.5, so the lower line is z2):
  //   y1 ≥ z1 − (0.75 z2 + 0.375) = 0.25 x1 + 1.75 x2 − 0.75 ≥ −0.75;
  //   −y1 ≥ −z1 + z2 = −2 x2 + 0.5 ≥ −1.5, so y1 ≤ 1.5 (the true maximum, at x = (1, 1));
  //   y1 − y2 = 2 y1 ≥ −1.5;  y2 − y1 = −2 y1 ≥ −3.
  b = bounds_of(*net, x, y0, {Norm::Linf, 0.5, BoundMethod::Linear});
  EXPECT_TRUE(testing::all_close(std::vector<double>(b.lo.begin(), b.lo.end()), {-0.75, -1.5}, 0, tol));
  EXPECT_TRUE(testing::all_close(std::vector<double>(b.hi.begin(), b.hi.end()), {1.5, 0.75}, 0, tol));
  EXPECT_NEAR(b.margin[1], -1.5, tol);
  EXPECT_NEAR(certify::margin_lower_bounds(*net, x, y1, {Norm::Linf, 0.5, BoundMethod::Linear}).to_vector<float>()[0], -3.0,
              tol);
  // Wong & Kolter's lower line 0.75 z2: −y1 ≥ −z1 + 0.75 z2 = −0.25 x1 − 1.75 x2 + 0.375 ≥ −1.625.
  b = bounds_of(*net, x, y1, {Norm::Linf, 0.5, BoundMethod::Linear, certify::ReluRelaxation::WongKolter});
  EXPECT_NEAR(b.hi[0], 1.625, tol);
  EXPECT_NEAR(b.lo[0], -0.75, tol);
  EXPECT_NEAR(b.margin[0], -3.25, tol);
  // L2, ε = 0.5: the first layer over the ball is Wx0 + b ± ε‖W_i‖₂ = (1, 0.5) ± √0.5, inside
  // the box bounds; so h1 ∈ [1 − √0.5, 1 + √0.5], h2 ∈ [0, 0.5 + √0.5] and IBP gives
  // y1 ∈ [1 − √0.5 − (0.5 + √0.5), 1 + √0.5].
  const double r = std::sqrt(0.5);
  b = bounds_of(*net, x, y0, {Norm::L2, 0.5, BoundMethod::Interval});
  EXPECT_NEAR(b.lo[0], 0.5 - 2 * r, tol);
  EXPECT_NEAR(b.hi[0], 1 + r, tol);
  // CROWN with l = 0.5 − √0.5, u = 0.5 + √0.5: chord slope s = u/(u − l), intercept −s·l;
  //   y1 ≥ (1 − s) x1 + (1 + s) x2 − 0.5 s + s l, minimized over the ball: value at x0 minus
  //   ε‖(1 − s, 1 + s)‖₂ (larger than the box minimum at x = 0);  −y1 ≥ −2 x2 + 0.5 ≥ −1.5.
  const double l = 0.5 - r, u = 0.5 + r, s = u / (u - l);
  const double at_x0 = 0.5 * (1 - s) + 0.5 * (1 + s) - 0.5 * s + s * l;
  b = bounds_of(*net, x, y0, {Norm::L2, 0.5, BoundMethod::Linear});
  EXPECT_NEAR(b.lo[0], at_x0 - 0.5 * std::hypot(1 - s, 1 + s), tol);
  EXPECT_NEAR(b.hi[0], 1.5, tol);
}

// Intermediate bounds matter: z = (x1 + x2, x1 − x2 + 2) ∈ [0, 2] × [1, 3] is active, so
// v = z1 − z2 + 2.5 = 2 x2 + 0.5 ∈ [0.5, 2.5] over B = [0, 1]²; IBP's box for v is
// [0 − 3, 2 − 1] + 2.5 = [−0.5, 3.5], undecided. CROWN's own bound on v decides it, after which
// the network is affine on B and (y1, y2) = (relu(v), −relu(v)) is bounded exactly; with IBP's
// box for v the chord would give y1 ≤ 0.875·2.5 + 0.4375 = 2.625 instead.
TEST(BoundsExact, HandComputedIntermediateBoundsDecideANeuron) {
  nn::Sequential net(std::vector<ModulePtr>{fixed_linear(2, 2, {1, 1, 1, -1}, {0, 2}), act(),
                                            fixed_linear(2, 1, {1, -1}, {2.5f}), act(),
                                            fixed_linear(1, 2, {1, -1}, {0, 0})});
  const Tensor x = Tensor::from_vector(std::vector<float>{0.5f, 0.5f}, {1, 2});
  const double tol = 1e-6;  // a few float operations on numbers of size ≤ 4
  certify::OutputBounds b = certify::output_bounds(net, x, {Norm::Linf, 0.5, BoundMethod::Interval});
  EXPECT_TRUE(testing::all_close(b.lower, {0.0, -3.5}, 0, tol));
  EXPECT_TRUE(testing::all_close(b.upper, {3.5, 0.0}, 0, tol));
  b = certify::output_bounds(net, x, {Norm::Linf, 0.5, BoundMethod::Linear});
  EXPECT_TRUE(testing::all_close(b.lower, {0.5, -2.5}, 0, tol));
  EXPECT_TRUE(testing::all_close(b.upper, {2.5, -0.5}, 0, tol));
}

// One affine layer is bounded exactly by both methods: for L∞ by W_j·x0 + b_j ± ε‖W_j‖₁ and for
// L2 by ± ε‖W_j‖₂, attained at x0 ± ε·sign(W_j) and x0 ± ε·W_j/‖W_j‖₂ (inside [0, 1] here). The
// rows W_j are read off the network by autograd, so a convolution's border rows (fewer taps
// through the padding) are checked as they are.
TEST(BoundsExact, ExactOnASingleAffineLayer) {
  nn::InitRng rng(21);
  std::vector<Net> nets;
  nets.push_back(
      {"conv",
       std::make_shared<nn::Sequential>(std::vector<ModulePtr>{
           std::make_shared<nn::Conv2d>(2, 3, 3, rng, nn::Conv2dOptions{2, 1}), std::make_shared<nn::Flatten>()}),
       {2, 5, 5}});
  nets.push_back({"linear",
                  std::make_shared<nn::Sequential>(std::vector<ModulePtr>{std::make_shared<nn::Flatten>(),
                                                                          std::make_shared<nn::Linear>(12, 4, rng)}),
                  {3, 2, 2}});
  const double eps = 0.05;
  for (Net& net : nets) {
    const std::int64_t n = 2;
    const Tensor x = testing::random_tensor(batched(n, net.input), 22, 0.3f, 0.7f);
    const std::int64_t k = static_cast<std::int64_t>(forward(*net.model, x).size()) / n, d = x.numel() / n;
    // Row (j, e): example e, seeded with e_j, so its input gradient is W_j.
    std::vector<float> reps, seed(static_cast<std::size_t>(k * n * k), 0.0f);
    const std::vector<float> xv = x.to_vector<float>();
    for (std::int64_t j = 0; j < k; ++j)
      for (std::int64_t e = 0; e < n; ++e) {
        reps.insert(reps.end(), xv.begin() + e * d, xv.begin() + (e + 1) * d);
        seed[static_cast<std::size_t>((j * n + e) * k + j)] = 1.0f;
      }
    nn::Var xr(Tensor::from_vector(reps, batched(k * n, net.input)), true);
    autograd::backward(net.model->forward(xr), Tensor::from_vector(seed, {k * n, k}));
    const std::vector<float> w = xr.grad().to_vector<float>();
    for (const std::string norm : {"linf", "l2"}) {
      std::vector<float> hi_at(reps), lo_at(reps);
      for (std::int64_t r = 0; r < k * n; ++r) {
        double sq = 0.0;
        for (std::int64_t i = 0; i < d; ++i)
          sq += static_cast<double>(w[static_cast<std::size_t>(r * d + i)]) * w[static_cast<std::size_t>(r * d + i)];
        for (std::int64_t i = 0; i < d; ++i) {
          const std::size_t at = static_cast<std::size_t>(r * d + i);
          const double dir = norm == "linf" ? (w[at] > 0 ? 1.0 : w[at] < 0 ? -1.0 : 0.0) : w[at] / std::sqrt(sq);
          hi_at[at] = static_cast<float>(reps[at] + eps * dir);
          lo_at[at] = static_cast<float>(reps[at] - eps * dir);
        }
      }
      const std::vector<float> zh = forward(*net.model, Tensor::from_vector(hi_at, xr.shape()));
      const std::vector<float> zl = forward(*net.model, Tensor::from_vector(lo_at, xr.shape()));
      for (const BoundMethod m : {BoundMethod::Interval, BoundMethod::Linear}) {
        SCOPED_TRACE(net.name + " " + norm + (m == BoundMethod::Linear ? " crown" : " ibp"));
        const certify::OutputBounds b = certify::output_bounds(*net.model, x, {parse_norm(norm), eps, m});
        const std::vector<float> lo = b.lower.to_vector<float>(), hi = b.upper.to_vector<float>();
        for (std::int64_t j = 0; j < k; ++j)
          for (std::int64_t e = 0; e < n; ++e) {
            const std::size_t at = static_cast<std::size_t>(e * k + j),
                              row = static_cast<std::size_t>((j * n + e) * k + j);
            EXPECT_NEAR(hi[at], zh[row], slack(zh[row])) << "example " << e << " output " << j;
            EXPECT_NEAR(lo[at], zl[row], slack(zl[row])) << "example " << e << " output " << j;
          }
      }
    }
  }
}

// The enclosing lines of certify/bounds_relax.cpp hold on a fine grid of each interval, for
// intervals in every case of the relaxation: below 0, above 0, across 0 (narrow, wide,
// lopsided either way), and degenerate.
TEST(BoundsExact, ActivationLinesEncloseTheActivation) {
  const std::vector<float> l{-3, -0.2f, 0.1f, 0.5f, -0.3f, -4, -0.5f, -6, -1, 0.7f, -2, 0, -1, 0, -8};
  const std::vector<float> u{-0.5f, -0.1f, 0.3f, 4, 0.2f, 0.5f, 4, 6, 1, 0.7f, -2, 0, 0, 2, 9};
  const std::int64_t m = static_cast<std::int64_t>(l.size());
  const certify::detail::Box pre{Tensor::from_vector(l, {1, m}), Tensor::from_vector(u, {1, m})};
  for (const auto f : {kernels::Activation::ReLU, kernels::Activation::Tanh, kernels::Activation::Sigmoid})
    for (const auto relu : {certify::ReluRelaxation::Adaptive, certify::ReluRelaxation::WongKolter}) {
      const certify::detail::Lines ln = certify::detail::relax(f, pre, relu);
      for (std::size_t i = 0; i < l.size(); ++i) {
        double lower_gap = INFINITY, upper_gap = INFINITY;
        for (int t = 0; t <= 1000; ++t) {
          const double z = l[i] + (static_cast<double>(u[i]) - l[i]) * t / 1000.0;
          const double fz = f == kernels::Activation::ReLU   ? std::max(0.0, z)
                            : f == kernels::Activation::Tanh ? std::tanh(z)
                                                             : 1.0 / (1.0 + std::exp(-z));
          // The lines' coefficients are stored as floats: rounding of order 1e-7·(1 + |z|).
          const double tol = 1e-6 * (1.0 + std::fabs(z));
          const double lo = ln.lower_slope[i] * z + ln.lower_icpt[i], up = ln.upper_slope[i] * z + ln.upper_icpt[i];
          EXPECT_LE(lo, fz + tol) << "interval " << i << " z " << z;
          EXPECT_GE(up, fz - tol) << "interval " << i << " z " << z;
          lower_gap = std::min(lower_gap, fz - lo);
          upper_gap = std::min(upper_gap, up - fz);
        }
        // Neither line is slack everywhere: each touches f (at an end, at 0 or at the midpoint),
        // up to the grid step times a slope ≤ 1.
        const double touch = 2e-3 * (static_cast<double>(u[i]) - l[i]) + 1e-6;
        EXPECT_LE(lower_gap, touch) << "interval " << i;
        EXPECT_LE(upper_gap, touch) << "interval " << i;
      }
    }
}

}  // namespace
}  // namespace aegis
