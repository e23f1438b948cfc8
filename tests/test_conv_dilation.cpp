// Dilated convolutions (kernels/conv.h, dilation d > 1): forward, input, weight and bias gradients
// and the unfold against a naive double-precision reference written out here, finite differences,
// CUDA against the CPU (skipped without a GPU), and bound propagation through a dilated Conv2d,
// whose adjoint must not take the stride-1 flipped-kernel shortcut of certify/bounds_linear.cpp:
// its bounds must equal those of the same network with the convolution as a dense Linear layer.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "certify/bounds.h"
#include "kernels/conv.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "runtime/autograd.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
namespace F = nn::F;

struct DilatedCase {
  std::int64_t n, c, h, w, o, k, stride, pad, dilation;
  Shape x_shape() const { return {n, c, h, w}; }
  Shape w_shape() const { return {o, c, k, k}; }
  std::int64_t oh() const { return (h + 2 * pad - dilation * (k - 1) - 1) / stride + 1; }
  std::int64_t ow() const { return (w + 2 * pad - dilation * (k - 1) - 1) / stride + 1; }
  nn::Conv2dOptions options() const { return {stride, pad, dilation}; }
  std::string str() const {
    std::ostringstream os;
    os << "x[" << n << "," << c << "," << h << "," << w << "] w[" << o << "," << c << "," << k << "," << k << "] s "
       << stride << " p " << pad << " d " << dilation;
    return os.str();
  }
};

const DilatedCase kCases[] = {
    {2, 3, 9, 8, 4, 3, 1, 0, 2},    // no padding: the output shrinks by d·(k − 1)
    {1, 2, 7, 7, 3, 3, 1, 2, 2},    // "same" padding for d = 2
    {3, 4, 11, 10, 5, 3, 2, 1, 3},  // stride 2, d = 3
    {2, 8, 10, 10, 8, 3, 1, 1, 2},  // 8 channels: what Winograd would take at d = 1
    {2, 3, 8, 9, 2, 2, 1, 0, 4},    // 2×2 kernel (the direct kernel's range at d = 1)
    {1, 1, 5, 5, 1, 1, 1, 0, 3},    // 1×1: dilation changes nothing
};

struct Reference {
  std::vector<double> y, dx, dw, db;
};
Reference reference(const DilatedCase& d, const std::vector<double>& x, const std::vector<double>& w,
                    const std::vector<double>& b, const std::vector<double>& gy) {
  Reference r;
  r.dx.assign(x.size(), 0.0);
  r.dw.assign(w.size(), 0.0);
  r.db.assign(b.size(), 0.0);
  std::size_t at = 0;
  for (std::int64_t n = 0; n < d.n; ++n)
    for (std::int64_t o = 0; o < d.o; ++o)
      for (std::int64_t i = 0; i < d.oh(); ++i)
        for (std::int64_t j = 0; j < d.ow(); ++j, ++at) {
          double acc = b[static_cast<std::size_t>(o)];
          r.db[static_cast<std::size_t>(o)] += gy[at];
          for (std::int64_t c = 0; c < d.c; ++c)
            for (std::int64_t a = 0; a < d.k; ++a)
              for (std::int64_t e = 0; e < d.k; ++e) {
                const std::int64_t row = i * d.stride - d.pad + a * d.dilation;
                const std::int64_t col = j * d.stride - d.pad + e * d.dilation;
                if (row < 0 || row >= d.h || col < 0 || col >= d.w) continue;
                const auto xi = static_cast<std::size_t>(((n * d.c + c) * d.h + row) * d.w + col);
                const auto wi = static_cast<std::size_t>(((o * d.c + c) * d.k + a) * d.k + e);
                acc += w[wi] * x[xi];
                r.dx[xi] += gy[at] * w[wi];
                r.dw[wi] += gy[at] * x[xi];
              }
          r.y.push_back(acc);
        }
  return r;
}

TEST(DilatedConv2d, ForwardAndBackwardMatchReference) {
  for (const DilatedCase& d : kCases) {
    SCOPED_TRACE(d.str());
    const Var x(testing::random_tensor(d.x_shape(), 1), true), w(testing::random_tensor(d.w_shape(), 2), true);
    const Var b(testing::random_tensor({d.o}, 3), true);
    const Var y = F::conv2d(x, w, b, d.options());
    ASSERT_EQ(y.shape(), (Shape{d.n, d.o, d.oh(), d.ow()}));
    const Tensor gy = testing::random_tensor(y.shape(), 4);
    autograd::backward(y, gy);
    const Reference r = reference(d, testing::to_double(x.value()), testing::to_double(w.value()),
                                  testing::to_double(b.value()), testing::to_double(gy));
    // float32 sums of ≤ 36 products of O(1) values (dw: ≤ N·H'·W' = 243): ~1e-6 relative.
    EXPECT_TRUE(testing::all_close(y.value(), r.y, 1e-5, 1e-5));
    EXPECT_TRUE(testing::all_close(x.grad(), r.dx, 1e-5, 1e-5));
    EXPECT_TRUE(testing::all_close(w.grad(), r.dw, 1e-5, 1e-4));
    EXPECT_TRUE(testing::all_close(b.grad(), r.db, 1e-5, 1e-4));
  }
}

TEST(DilatedConv2d, UnfoldReadsTheDilatedTaps) {
  const DilatedCase d = kCases[2];
  const Tensor x = testing::random_tensor(d.x_shape(), 5);
  kernels::Conv2dGeometry g;
  g.batch = d.n;
  g.in_channels = d.c;
  g.height = d.h;
  g.width = d.w;
  g.out_channels = d.o;
  g.kernel_h = g.kernel_w = d.k;
  g.stride = d.stride;
  g.padding = d.pad;
  g.dilation = d.dilation;
  const std::int64_t plane = d.oh() * d.ow(), rows = d.c * d.k * d.k;
  std::vector<float> cols(static_cast<std::size_t>(d.n * rows * plane));
  kernels::cpu::conv2d_unfold(g, x.data<float>(), cols.data());
  const std::vector<float> xv = x.to_vector<float>();
  for (std::int64_t n = 0; n < d.n; ++n)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t q = 0; q < plane; ++q) {
        const std::int64_t c = r / (d.k * d.k), a = (r / d.k) % d.k, e = r % d.k;
        const std::int64_t row = (q / d.ow()) * d.stride - d.pad + a * d.dilation;
        const std::int64_t col = (q % d.ow()) * d.stride - d.pad + e * d.dilation;
        const bool inside = row >= 0 && row < d.h && col >= 0 && col < d.w;
        const float expected = inside ? xv[static_cast<std::size_t>(((n * d.c + c) * d.h + row) * d.w + col)] : 0.0f;
        ASSERT_EQ(cols[static_cast<std::size_t>((n * rows + r) * plane + q)], expected) << n << " " << r << " " << q;
      }
}

TEST(DilatedConv2d, GradientsMatchFiniteDifferencesAndBadOptionsAreRefused) {
  const DilatedCase d{1, 2, 7, 6, 2, 3, 2, 1, 2};
  const nn::Conv2dOptions opt = d.options();
  EXPECT_TRUE(testing::gradcheck(
      [opt](const std::vector<Var>& v) { return testing::weighted_sum(F::conv2d(v[0], v[1], v[2], opt), 6); },
      {Var(testing::random_tensor(d.x_shape(), 7), true), Var(testing::random_tensor(d.w_shape(), 8), true),
       Var(testing::random_tensor({d.o}, 9), true)}));
  const Var x(testing::random_tensor({1, 1, 5, 5}, 10)), w(testing::random_tensor({1, 1, 3, 3}, 11));
  EXPECT_THROW(F::conv2d(x, w, Var(), {1, 0, 0}), InvalidArgument);  // dilation 0
  EXPECT_THROW(F::conv2d(x, w, Var(), {1, 0, 3}), ShapeError);       // spans 7 > 5 inputs
  EXPECT_NO_THROW(F::conv2d(x, w, Var(), {1, 1, 3}));                // spans 7 = 5 + 2·1
}

// y = conv(x) on inputs of one-example shape `in` as a Linear layer: columns layer(e_i) − layer(0).
std::shared_ptr<nn::Linear> dense_twin(nn::Module& layer, const Shape& in) {
  const std::int64_t d = shape_numel(in);
  Shape batch{d};
  batch.insert(batch.end(), in.begin(), in.end());
  Tensor eye = Tensor::zeros(batch);
  for (std::int64_t i = 0; i < d; ++i) eye.data<float>()[i * d + i] = 1.0f;
  Shape one = batch;
  one[0] = 1;
  const std::vector<float> y = layer.forward(Var(eye)).value().to_vector<float>();
  const std::vector<float> y0 = layer.forward(Var(Tensor::zeros(one))).value().to_vector<float>();
  const auto out = static_cast<std::int64_t>(y0.size());
  std::vector<float> wt(static_cast<std::size_t>(out * d));
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t o = 0; o < out; ++o)
      wt[static_cast<std::size_t>(o * d + i)] =
          y[static_cast<std::size_t>(i * out + o)] - y0[static_cast<std::size_t>(o)];
  nn::InitRng rng(0);
  auto l = std::make_shared<nn::Linear>(d, out, rng);
  Var wv = l->weight(), bv = l->bias();
  wv.mutable_value() = Tensor::from_vector(wt, {out, d});
  bv.mutable_value() = Tensor::from_vector(y0, {out});
  return l;
}

TEST(DilatedConv2d, BoundsEqualTheDenseNetwork) {
  nn::InitRng rng(12);
  auto c1 = std::make_shared<nn::Conv2d>(1, 8, 3, rng, nn::Conv2dOptions{1, 1});
  auto c2 = std::make_shared<nn::Conv2d>(8, 8, 3, rng, nn::Conv2dOptions{1, 2, 2});  // stride 1: the shortcut's case
  auto fc = std::make_shared<nn::Linear>(8 * 6 * 6, 4, rng);
  auto relu = [] { return std::make_shared<nn::ActivationLayer>(nn::ActivationKind::ReLU); };
  nn::Sequential conv({c1, relu(), c2, relu(), std::make_shared<nn::Flatten>(), fc});
  nn::Sequential dense(
      {std::make_shared<nn::Flatten>(), dense_twin(*c1, {1, 6, 6}), relu(), dense_twin(*c2, {8, 6, 6}), relu(), fc});
  const Tensor x = testing::random_tensor({3, 1, 6, 6}, 13, 0.0f, 1.0f);
  for (const certify::BoundMethod method : {certify::BoundMethod::Interval, certify::BoundMethod::Linear}) {
    SCOPED_TRACE(certify::bound_method_name(method));
    const certify::BoundOptions o{parse_norm("linf"), 0.02, method};
    const certify::OutputBounds a = certify::output_bounds(conv, x, o), b = certify::output_bounds(dense, x, o);
    // A few hundred float32 terms per neuron in different orders: ~1e-5 of the values involved.
    EXPECT_TRUE(testing::all_close(a.lower, b.lower, 2e-4, 2e-4));
    EXPECT_TRUE(testing::all_close(a.upper, b.upper, 2e-4, 2e-4));
  }
}

TEST(DilatedConv2dCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  for (const DilatedCase& d : kCases) {
    SCOPED_TRACE(d.str());
    const Tensor xt = testing::random_tensor(d.x_shape(), 14), wt = testing::random_tensor(d.w_shape(), 15);
    const Tensor bt = testing::random_tensor({d.o}, 16), gy = testing::random_tensor({d.n, d.o, d.oh(), d.ow()}, 17);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const Var x(run.input(xt), true), w(run.input(wt), true), b(run.input(bt), true);
      const Var y = F::conv2d(x, w, b, d.options());
      autograd::backward(y, run.input(gy));
      // cuDNN (full fp32) and im2col + sgemm sum the same ≤ 243 O(1) products in other orders.
      run.check("y", y.value(), {1e-4, 1e-4});
      run.check("dx", x.grad(), {1e-4, 1e-4});
      run.check("dw", w.grad(), {1e-4, 1e-3});
      run.check("db", b.grad(), {1e-4, 1e-3});
    }));
  }
}

}  // namespace
}  // namespace aegis
