// CROWN and IBP through each way the backward pass takes a convolution's adjoint
// (certify/bounds_linear.cpp): the dense matrix (few input channels on a small plane), a forward
// convolution with the flipped kernel (stride 1; 3×3 runs as Winograd, 5×5 as the direct kernel
// on AVX2 CPUs), and the backward-data kernel (stride 2), inside a residual block and before an
// average pooling. Oracle: a convolution is a linear map, so the same network with every
// convolution and the pooling written as their dense Linear layers must give the same bounds up
// to float rounding; and both contain the network's values at random points of the input set.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "certify/bounds.h"
#include "nn/layers.h"
#include "nn/residual.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::BoundMethod;
using nn::ModulePtr;

ModulePtr act() {
  return std::make_shared<nn::ActivationLayer>(nn::ActivationKind::ReLU);
}

// The Linear layer computing `layer` on inputs of one-example shape `in`: column i of its weight
// is layer(e_i) − layer(0), its bias layer(0).
std::shared_ptr<nn::Linear> as_linear(nn::Module& layer, const Shape& in) {
  const std::int64_t d = shape_numel(in);
  Shape basis_shape{d};
  basis_shape.insert(basis_shape.end(), in.begin(), in.end());
  std::vector<float> eye(static_cast<std::size_t>(d * d), 0.0f);
  for (std::int64_t i = 0; i < d; ++i) eye[static_cast<std::size_t>(i * d + i)] = 1.0f;
  Shape zero_shape = basis_shape;
  zero_shape[0] = 1;
  const std::vector<float> y = layer.forward(nn::Var(Tensor::from_vector(eye, basis_shape))).value().to_vector<float>();
  const std::vector<float> y0 = layer.forward(nn::Var(Tensor::zeros(zero_shape))).value().to_vector<float>();
  const std::int64_t out = static_cast<std::int64_t>(y0.size());
  std::vector<float> w(static_cast<std::size_t>(out * d));
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t o = 0; o < out; ++o)
      w[static_cast<std::size_t>(o * d + i)] =
          y[static_cast<std::size_t>(i * out + o)] - y0[static_cast<std::size_t>(o)];
  nn::InitRng rng(0);
  auto l = std::make_shared<nn::Linear>(d, out, rng);
  nn::Var wv = l->weight(), bv = l->bias();
  wv.mutable_value() = Tensor::from_vector(w, {out, d});
  bv.mutable_value() = Tensor::from_vector(y0, {out});
  return l;
}

struct Pair {
  std::shared_ptr<nn::Sequential> conv, dense;
};

// Input 1×8×8: conv 8@3x3 p1 (dense adjoint), Residual(conv 8@3x3 p1, ReLU, conv 8@3x3 p1)
// (forward-convolution adjoints), ReLU, conv 8@3x3 s2 p1 (backward data), ReLU, conv 8@5x5 p2
// (forward convolution, 5×5), ReLU, avgpool 2, Flatten, Linear(32, 5).
Pair networks() {
  nn::InitRng rng(7);
  const auto conv = [&](std::int64_t i, std::int64_t o, std::int64_t k, std::int64_t s, std::int64_t p) {
    return std::make_shared<nn::Conv2d>(i, o, k, rng, nn::Conv2dOptions{s, p});
  };
  auto c1 = conv(1, 8, 3, 1, 1), c2 = conv(8, 8, 3, 1, 1), c3 = conv(8, 8, 3, 1, 1), c4 = conv(8, 8, 3, 2, 1);
  auto c5 = conv(8, 8, 5, 1, 2);
  auto pool = std::make_shared<nn::AvgPool2d>(nn::Pool2dOptions{2, 2, 0});
  auto fc = std::make_shared<nn::Linear>(32, 5, rng);
  Pair p;
  p.conv = std::make_shared<nn::Sequential>(
      std::vector<ModulePtr>{c1, act(), std::make_shared<nn::Residual>(std::vector<ModulePtr>{c2, act(), c3}), act(),
                             c4, act(), c5, act(), pool, std::make_shared<nn::Flatten>(), fc});
  p.dense = std::make_shared<nn::Sequential>(std::vector<ModulePtr>{
      std::make_shared<nn::Flatten>(), as_linear(*c1, {1, 8, 8}), act(),
      std::make_shared<nn::Residual>(
          std::vector<ModulePtr>{as_linear(*c2, {8, 8, 8}), act(), as_linear(*c3, {8, 8, 8})}),
      act(), as_linear(*c4, {8, 8, 8}), act(), as_linear(*c5, {8, 4, 4}), act(), as_linear(*pool, {8, 4, 4}), fc});
  return p;
}

// Bounds of networks of a few hundred float32 terms per neuron, computed in different orders
// (convolution kernels against matrix products): they agree to ~1e-5 of the values involved.
double slack(double v) {
  return 2e-4 * (1.0 + std::fabs(v));
}

TEST(BoundsConvPaths, EqualTheDenseNetworkAndContainSampledPoints) {
  const Pair p = networks();
  const std::int64_t n = 5;
  const Tensor x = testing::random_tensor({n, 1, 8, 8}, 11, 0.0f, 1.0f);
  const Tensor y = Tensor::from_vector(std::vector<std::int32_t>{0, 1, 2, 3, 4}, {n});
  const std::vector<float> value = p.conv->forward(nn::Var(x)).value().to_vector<float>();
  const std::vector<float> dense_value = p.dense->forward(nn::Var(x)).value().to_vector<float>();
  for (std::size_t i = 0; i < value.size(); ++i) ASSERT_NEAR(value[i], dense_value[i], slack(value[i]));
  for (const std::string norm : {"linf", "l2"})
    for (const BoundMethod method : {BoundMethod::Interval, BoundMethod::Linear}) {
      const certify::BoundOptions o{parse_norm(norm), norm == "linf" ? 0.02 : 0.1, method};
      SCOPED_TRACE(norm + " " + certify::bound_method_name(method));
      const certify::OutputBounds a = certify::output_bounds(*p.conv, x, o), b = certify::output_bounds(*p.dense, x, o);
      const std::vector<float> al = a.lower.to_vector<float>(), au = a.upper.to_vector<float>();
      const std::vector<float> bl = b.lower.to_vector<float>(), bu = b.upper.to_vector<float>();
      for (std::size_t i = 0; i < al.size(); ++i) {
        EXPECT_NEAR(al[i], bl[i], slack(al[i])) << "lower " << i;
        EXPECT_NEAR(au[i], bu[i], slack(au[i])) << "upper " << i;
      }
      const std::vector<float> am = certify::margin_lower_bounds(*p.conv, x, y, o).to_vector<float>();
      const std::vector<float> bm = certify::margin_lower_bounds(*p.dense, x, y, o).to_vector<float>();
      for (std::size_t i = 0; i < am.size(); ++i)
        if (std::isfinite(am[i])) {
          EXPECT_NEAR(am[i], bm[i], slack(am[i])) << "margin " << i;
        }
      // Random points of the input set (a corner-biased box sample, scaled into the L2 ball).
      for (std::uint64_t s = 0; s < 20; ++s) {
        Tensor xs = testing::random_tensor({n, 1, 8, 8}, 100 + s, -1.0f, 1.0f);
        std::vector<float> d = xs.to_vector<float>();
        const std::vector<float> x0 = x.to_vector<float>();
        for (std::int64_t e = 0; e < n; ++e) {
          double sq = 0.0;
          for (std::int64_t j = 0; j < 64; ++j)
            sq +=
                static_cast<double>(d[static_cast<std::size_t>(e * 64 + j)]) * d[static_cast<std::size_t>(e * 64 + j)];
          for (std::int64_t j = 0; j < 64; ++j) {
            float& v = d[static_cast<std::size_t>(e * 64 + j)];
            v = norm == "linf"
                    ? static_cast<float>(o.eps) * (v >= 0 ? 1.0f : -1.0f) * (std::fabs(v) > 0.3f ? 1.0f : std::fabs(v))
                    : static_cast<float>(o.eps * v / std::sqrt(sq));
            v = std::min(1.0f, std::max(0.0f, x0[static_cast<std::size_t>(e * 64 + j)] + v));
          }
        }
        const std::vector<float> z =
            p.conv->forward(nn::Var(Tensor::from_vector(d, {n, 1, 8, 8}))).value().to_vector<float>();
        for (std::size_t i = 0; i < z.size(); ++i) {
          EXPECT_GE(z[i], al[i] - slack(z[i])) << "point " << s << " logit " << i;
          EXPECT_LE(z[i], au[i] + slack(z[i])) << "point " << s << " logit " << i;
        }
      }
    }
}

}  // namespace
}  // namespace aegis
