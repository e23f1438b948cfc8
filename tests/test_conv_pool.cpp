#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>
#include <string>

#include "kernels/cpu/conv_block.h"
#include "nn/functional.h"
#include "reference/conv_pool.h"
#include "runtime/autograd.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
namespace F = nn::F;

// ---- helpers ---------------------------------------------------------------------------------

struct ConvCase {
  std::int64_t n, c, h, w, o, kh, kw, stride, pad;
  reference::ConvDims dims() const { return {n, c, h, w, o, kh, kw, stride, pad}; }
  Shape x_shape() const { return {n, c, h, w}; }
  Shape w_shape() const { return {o, c, kh, kw}; }
  Shape y_shape() const { return {n, o, dims().oh(), dims().ow()}; }
  nn::Conv2dOptions options() const { return {stride, pad}; }
  std::string str() const {
    std::ostringstream os;
    os << "x[" << n << "," << c << "," << h << "," << w << "] w[" << o << "," << c << "," << kh << "," << kw
       << "] stride " << stride << " pad " << pad;
    return os.str();
  }
};

const ConvCase kConvCases[] = {
    {1, 1, 5, 5, 1, 3, 3, 1, 0},      // batch 1, one channel in and out
    {2, 3, 7, 6, 4, 3, 3, 2, 1},      // odd, non-square image; stride 2, padding 1
    {2, 1, 28, 28, 16, 8, 8, 2, 2},   // the MNIST CNN's first layer
    {3, 16, 13, 13, 32, 4, 4, 2, 0},  // its second layer: many channels, (13 − 4)/2 rounds down
    {2, 5, 9, 11, 3, 1, 1, 1, 0},     // 1×1, stride 1, no padding: the path without im2col
    {2, 3, 5, 5, 2, 1, 1, 2, 0},      // 1×1 with stride 2 goes through im2col
    {1, 2, 4, 4, 3, 4, 4, 1, 2},      // kernel as large as the image, output larger than the input
    {4, 7, 8, 5, 6, 5, 5, 3, 2},      // stride 3
    {2, 2, 6, 7, 3, 3, 2, 2, 1},      // non-square kernel
    {5, 3, 1, 1, 2, 1, 1, 1, 0},      // 1×1 image
    {64, 3, 8, 8, 4, 3, 3, 1, 1},     // large batch: many examples per thread, per-thread dw partials
    // The direct forward path (kernels/cpu/conv_direct.cpp): residual-network shapes, rows that
    // are not a multiple of 8 wide (masked last vector), output channels not a multiple of its
    // block of 4, and batch 1 (output channels split over the threads).
    {3, 16, 32, 32, 16, 3, 3, 1, 1},
    {2, 16, 32, 32, 32, 3, 3, 2, 1},
    {1, 64, 8, 8, 64, 3, 3, 1, 1},
    {2, 5, 17, 19, 7, 3, 3, 1, 1},
    {2, 4, 28, 28, 5, 5, 5, 1, 2},
    {3, 6, 15, 9, 9, 3, 3, 2, 0},
    // The Winograd path (kernels/cpu/conv_winograd.cpp): odd output sizes (partial 2×2 tiles and
    // a partial last vector of tiles), no padding, output channels not a multiple of 4.
    {2, 8, 17, 17, 8, 3, 3, 1, 1},
    {1, 16, 9, 18, 9, 3, 3, 1, 0},
    {2, 12, 19, 37, 10, 3, 3, 1, 1},
    {2, 16, 7, 7, 8, 3, 3, 1, 1},  // 4 tiles per row: two tile rows per vector, odd tile rows
    {1, 8, 10, 10, 12, 3, 3, 1, 0},
    {1, 8, 9, 16, 8, 3, 3, 1, 1},  // 40 tiles, not a multiple of 16: the 256-bit products
};

struct PoolCase {
  std::int64_t n, c, h, w, k, stride, pad;
  reference::PoolDims dims() const { return {n, c, h, w, k, stride, pad}; }
  Shape x_shape() const { return {n, c, h, w}; }
  Shape y_shape() const { return {n, c, dims().oh(), dims().ow()}; }
  nn::Pool2dOptions options() const { return {k, stride, pad}; }
  std::string str() const {
    std::ostringstream os;
    os << "x[" << n << "," << c << "," << h << "," << w << "] k " << k << " stride " << stride << " pad " << pad;
    return os.str();
  }
};

const PoolCase kPoolCases[] = {
    {1, 1, 4, 4, 2, 2, 0},     // batch 1, one channel, windows tile the image
    {2, 3, 7, 5, 3, 2, 1},     // odd, non-square; overlapping windows with padding
    {2, 16, 13, 13, 2, 1, 0},  // many channels, stride 1 (each input in up to 4 windows)
    {3, 2, 6, 9, 3, 3, 1},     // stride = kernel with padding
    {2, 4, 5, 8, 4, 2, 2},     // the largest padding allowed (k/2)
    {1, 1, 1, 1, 1, 1, 0},     // one element
    {1, 3, 9, 7, 3, 1, 1},     // "same"-size output
    {64, 4, 6, 6, 2, 2, 0},    // large batch
};

std::vector<double> values(const Var& v) {
  return testing::to_double(v.value());
}
std::vector<double> values(const Tensor& t) {
  return testing::to_double(t);
}

// Distinct values −spacing·(n/2) … spacing·(n/2) in a seeded random order: windows never tie, and a
// finite-difference step below spacing/2 never changes which element is a window's maximum.
Tensor distinct_values(const Shape& shape, std::uint64_t seed, double spacing, double shift = 0.0) {
  const std::vector<double> keys = testing::to_double(testing::random_tensor(shape, seed));
  std::vector<std::size_t> order(keys.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return keys[a] < keys[b]; });
  std::vector<float> v(keys.size());
  const double mid = 0.5 * static_cast<double>(keys.size());
  for (std::size_t rank = 0; rank < order.size(); ++rank)
    v[order[rank]] = static_cast<float>(shift + spacing * (static_cast<double>(rank) + 0.5 - mid));
  return Tensor::from_vector(v, shape);
}

// ---- conv2d on the CPU -----------------------------------------------------------------------

void expect_forward_matches_reference() {
  for (const ConvCase& cs : kConvCases) {
    for (bool with_bias : {true, false}) {
      SCOPED_TRACE(cs.str() + (with_bias ? " with bias" : " without bias"));
      const Var x(testing::random_tensor(cs.x_shape(), 1));
      const Var w(testing::random_tensor(cs.w_shape(), 2));
      const Var b = with_bias ? Var(testing::random_tensor({cs.o}, 3)) : Var();
      const Var y = F::conv2d(x, w, b, cs.options());
      ASSERT_EQ(y.shape(), cs.y_shape());
      const auto ref =
          reference::conv2d_forward(cs.dims(), values(x), values(w), with_bias ? values(b) : std::vector<double>{});
      // float32 sums of ≤ 256 products of values in [−1, 1]: rounding ≲ 256·6e-8 ≈ 2e-5.
      EXPECT_TRUE(testing::all_close(y.value(), ref, 1e-4, 1e-4));
    }
  }
}

TEST(Conv2d, ForwardMatchesReference) {
  expect_forward_matches_reference();
}

// The same on every vector path the CPU offers (AVX-512, AVX2 and the plain im2col + sgemm).
TEST(Conv2d, ForwardMatchesReferenceOnEveryInstructionSet) {
  using kernels::cpu::detail::Isa;
  for (Isa isa : {Isa::Avx2, Isa::Baseline}) {
    SCOPED_TRACE(isa == Isa::Avx2 ? "AVX2" : "baseline");
    kernels::cpu::detail::limit_conv_isa(isa);
    expect_forward_matches_reference();
  }
  kernels::cpu::detail::limit_conv_isa(Isa::Avx512);
}

// Each output element is its own sum in a fixed order, so an example's output does not depend on
// the batch it is in (nor on how the batch is split over threads).
TEST(Conv2d, ForwardOfAnExampleDoesNotDependOnTheBatch) {
  for (const ConvCase& cs : kConvCases) {
    SCOPED_TRACE(cs.str());
    const Tensor x = testing::random_tensor(cs.x_shape(), 7);
    const Var w(testing::random_tensor(cs.w_shape(), 8)), b(testing::random_tensor({cs.o}, 9));
    const std::vector<float> all = F::conv2d(Var(x), w, b, cs.options()).value().to_vector<float>();
    const std::int64_t last = cs.n - 1, per = cs.o * cs.dims().oh() * cs.dims().ow();
    Shape one = cs.x_shape();
    one[0] = 1;
    const std::vector<float> xs = x.to_vector<float>();
    const auto begin = xs.begin() + last * (cs.c * cs.h * cs.w);
    const Tensor x_last = Tensor::from_vector(std::vector<float>(begin, begin + cs.c * cs.h * cs.w), one);
    const std::vector<float> alone = F::conv2d(Var(x_last), w, b, cs.options()).value().to_vector<float>();
    ASSERT_EQ(static_cast<std::int64_t>(alone.size()), per);
    for (std::int64_t i = 0; i < per; ++i) ASSERT_EQ(alone[i], all[last * per + i]) << i;
  }
}

TEST(Conv2d, BackwardMatchesReference) {
  for (const ConvCase& cs : kConvCases) {
    SCOPED_TRACE(cs.str());
    const Var x(testing::random_tensor(cs.x_shape(), 4), true);
    const Var w(testing::random_tensor(cs.w_shape(), 5), true);
    const Var b(testing::random_tensor({cs.o}, 6), true);
    const Tensor gy = testing::random_tensor(cs.y_shape(), 7);
    autograd::backward(F::conv2d(x, w, b, cs.options()), gy);
    const auto ref = reference::conv2d_backward(cs.dims(), values(x), values(w), values(gy));
    // dx sums ≤ O·kh·kw = 512 products, dw and db ≤ N·H'·W' = 4096, all of O(1) values: float32
    // rounding (worst seen 6e-6 on a dw of 0.12) stays well inside 1e-4 + 1e-4·|expected|.
    EXPECT_TRUE(testing::all_close(x.grad(), ref.dx, 1e-4, 1e-4));
    EXPECT_TRUE(testing::all_close(w.grad(), ref.dw, 1e-4, 1e-4));
    EXPECT_TRUE(testing::all_close(b.grad(), ref.db, 1e-4, 1e-4));
  }
}

TEST(Conv2d, GradientsMatchFiniteDifferences) {
  // Small shapes (each element costs two forward passes). The output is linear in each single
  // input, so central differences have no truncation error; gradcheck's defaults cover rounding.
  const ConvCase cases[] = {{2, 3, 5, 4, 2, 3, 3, 2, 1}, {1, 2, 4, 5, 3, 2, 2, 1, 0}, {2, 2, 3, 3, 2, 1, 1, 1, 0}};
  for (const ConvCase& cs : cases) {
    SCOPED_TRACE(cs.str());
    std::vector<Var> in{Var(testing::random_tensor(cs.x_shape(), 8), true),
                        Var(testing::random_tensor(cs.w_shape(), 9), true),
                        Var(testing::random_tensor({cs.o}, 10), true)};
    const nn::Conv2dOptions opt = cs.options();
    EXPECT_TRUE(testing::gradcheck(
        [opt](const std::vector<Var>& v) { return testing::weighted_sum(F::conv2d(v[0], v[1], v[2], opt), 11); }, in));
  }
}

TEST(Conv2d, InputOnlyGradientSkipsWeights) {
  const ConvCase cs{2, 3, 7, 6, 4, 3, 3, 2, 1};
  const Var x(testing::random_tensor(cs.x_shape(), 12), true);
  const Var w(testing::random_tensor(cs.w_shape(), 13), false);
  const Var b(testing::random_tensor({cs.o}, 14), false);
  const Tensor gy = testing::random_tensor(cs.y_shape(), 15);
  autograd::backward(F::conv2d(x, w, b, cs.options()), gy);
  EXPECT_FALSE(w.has_grad());
  EXPECT_FALSE(b.has_grad());
  ASSERT_TRUE(x.has_grad());
  const auto ref = reference::conv2d_backward(cs.dims(), values(x), values(w), values(gy));
  EXPECT_TRUE(testing::all_close(x.grad(), ref.dx, 1e-4, 1e-4));  // as in BackwardMatchesReference

  // And the other way round: parameters only, no input gradient.
  const Var x2(x.value(), false);
  const Var w2(w.value(), true);
  autograd::backward(F::conv2d(x2, w2, Var(), cs.options()), gy);
  EXPECT_FALSE(x2.has_grad());
  EXPECT_TRUE(testing::all_close(w2.grad(), ref.dw, 1e-4, 1e-4));  // as in BackwardMatchesReference
}

TEST(Conv2d, NoTapeWhenNothingRequiresGrad) {
  const ConvCase cs{1, 2, 5, 5, 3, 3, 3, 1, 1};
  const Var y = F::conv2d(Var(testing::random_tensor(cs.x_shape(), 16)), Var(testing::random_tensor(cs.w_shape(), 17)),
                          Var(), cs.options());
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
}

TEST(Conv2d, CaptureKeepsActivationAndOutputGradient) {
  const ConvCase cs{3, 2, 6, 5, 4, 3, 3, 1, 1};
  const Var x(testing::random_tensor(cs.x_shape(), 18), false);
  const Var w(testing::random_tensor(cs.w_shape(), 19), true);
  const Var b(testing::random_tensor({cs.o}, 20), true);
  const Tensor gy = testing::random_tensor(cs.y_shape(), 21);

  nn::LayerCapture capture;
  capture.enabled = true;
  autograd::backward(F::conv2d(x, w, b, cs.options(), &capture), gy);
  ASSERT_TRUE(capture.activation.defined());
  ASSERT_TRUE(capture.output_grad.defined());
  EXPECT_EQ(capture.activation.shape(), cs.x_shape());
  EXPECT_EQ(capture.output_grad.shape(), cs.y_shape());
  EXPECT_TRUE(testing::all_close(capture.activation, x.value(), 0, 0));  // the same values, untouched
  EXPECT_TRUE(testing::all_close(capture.output_grad, gy, 0, 0));

  nn::LayerCapture off;  // enabled = false: nothing is kept
  autograd::backward(F::conv2d(x, w, b, cs.options(), &off), gy);
  EXPECT_FALSE(off.activation.defined());
  EXPECT_FALSE(off.output_grad.defined());
}

TEST(Conv2d, RejectsBadShapesAndHyperparameters) {
  const Var x(testing::random_tensor({2, 3, 6, 6}, 22));
  const Var w(testing::random_tensor({4, 3, 3, 3}, 23));
  const Var b(testing::random_tensor({4}, 24));
  EXPECT_NO_THROW(F::conv2d(x, w, b, {1, 0}));
  EXPECT_THROW(F::conv2d(Var(testing::random_tensor({3, 6, 6}, 25)), w, b, {1, 0}), ShapeError);     // 3-d input
  EXPECT_THROW(F::conv2d(x, Var(testing::random_tensor({4, 3, 9}, 26)), b, {1, 0}), ShapeError);     // 3-d weight
  EXPECT_THROW(F::conv2d(x, Var(testing::random_tensor({4, 2, 3, 3}, 27)), b, {1, 0}), ShapeError);  // channels
  EXPECT_THROW(F::conv2d(x, Var(testing::random_tensor({4, 3, 7, 7}, 28)), b, {1, 0}), ShapeError);  // kernel > input
  EXPECT_NO_THROW(F::conv2d(x, Var(testing::random_tensor({4, 3, 7, 7}, 28)), b, {1, 1}));           // fits once padded
  EXPECT_THROW(F::conv2d(x, Var(testing::random_tensor({4, 3, 3, 8}, 29)), b, {1, 0}), ShapeError);  // too wide
  EXPECT_THROW(F::conv2d(x, Var(testing::random_tensor({4, 3, 0, 3}, 30)), b, {1, 0}), ShapeError);  // empty kernel
  EXPECT_THROW(F::conv2d(x, w, Var(testing::random_tensor({5}, 31)), {1, 0}), ShapeError);           // bias size
  EXPECT_THROW(F::conv2d(Var(Tensor::full({2, 3, 6, 6}, 0.5, DType::F64)), w, b, {1, 0}), ShapeError);  // dtype
  EXPECT_THROW(F::conv2d(x, w, b, {0, 0}), InvalidArgument);                                            // stride 0
  EXPECT_THROW(F::conv2d(x, w, b, {1, -1}), InvalidArgument);  // negative padding
  try {
    F::conv2d(x, Var(testing::random_tensor({4, 2, 3, 3}, 27)), b, {1, 0});
    ADD_FAILURE() << "channel mismatch accepted";
  } catch (const ShapeError& e) {  // the message names the op and both shapes
    const std::string msg = e.what();
    EXPECT_NE(msg.find("conv2d"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 3, 6, 6]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 2, 3, 3]"), std::string::npos) << msg;
  }
}

// ---- pooling on the CPU ----------------------------------------------------------------------

TEST(MaxPool2d, ForwardAndBackwardMatchReference) {
  for (const PoolCase& cs : kPoolCases) {
    SCOPED_TRACE(cs.str());
    const Var x(testing::random_tensor(cs.x_shape(), 40), true);
    const Var y = F::max_pool2d(x, cs.options());
    ASSERT_EQ(y.shape(), cs.y_shape());
    const auto ref = reference::max_pool2d_forward(cs.dims(), values(x));
    EXPECT_TRUE(testing::all_close(y.value(), ref.y, 0, 0));  // a selection: exact
    const Tensor gy = testing::random_tensor(cs.y_shape(), 41);
    autograd::backward(y, gy);
    // Gradients of overlapping windows add up in float32 (≤ 4 terms): a few ulps.
    EXPECT_TRUE(testing::all_close(x.grad(), reference::max_pool2d_backward(ref.argmax, values(gy), values(x).size()),
                                   1e-6, 1e-6));
  }
}

TEST(MaxPool2d, PaddingActsAsMinusInfinity) {
  // All inputs negative: a zero-padded maximum would be 0 at the borders; −∞ padding never wins.
  const PoolCase cs{2, 3, 5, 6, 3, 2, 1};
  const Var x(distinct_values(cs.x_shape(), 42, 0.005, -1.5));
  const Var y = F::max_pool2d(x, cs.options());
  for (double v : values(y)) EXPECT_LT(v, -1.0);
  EXPECT_TRUE(testing::all_close(y.value(), reference::max_pool2d_forward(cs.dims(), values(x)).y, 0, 0));  // exact
}

TEST(MaxPool2d, TiesSendTheGradientToTheFirstMaximum) {
  // Constant input, 2×2 windows with stride 1 on a 3×3 image: window (i, j)'s first element is
  // (i, j), so each output gradient lands on a different input.
  const Var x(Tensor::full({1, 1, 3, 3}, 1.5), true);
  const Tensor gy = Tensor::from_vector<float>({1.0f, 2.0f, 3.0f, 4.0f}, {1, 1, 2, 2});
  autograd::backward(F::max_pool2d(x, {2, 1, 0}), gy);
  EXPECT_TRUE(testing::all_close(x.grad(), std::vector<double>{1, 2, 0, 3, 4, 0, 0, 0, 0}, 0, 0));  // exact routing
}

TEST(MaxPool2d, PropagatesNaN) {
  std::vector<float> v(16);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.1f * static_cast<float>(i) + 0.05f;
  v[5] = NAN;  // in the top-left 2×2 window, after a finite element
  const Var y = F::max_pool2d(Var(Tensor::from_vector(v, {1, 1, 4, 4})), {2, 2, 0});
  const auto out = values(y);
  EXPECT_TRUE(std::isnan(out[0]));
  for (std::size_t i = 1; i < out.size(); ++i) EXPECT_FALSE(std::isnan(out[i])) << i;
}

TEST(MaxPool2d, InferencePathGivesTheSameOutput) {
  const PoolCase cs{2, 3, 7, 5, 3, 2, 1};
  const Tensor xt = testing::random_tensor(cs.x_shape(), 43);
  const Var untracked = F::max_pool2d(Var(xt, false), cs.options());  // records no argmax
  const Var tracked = F::max_pool2d(Var(xt, true), cs.options());
  EXPECT_FALSE(untracked.requires_grad());
  EXPECT_TRUE(testing::all_close(untracked.value(), tracked.value(), 0, 0));  // same selection
}

TEST(AvgPool2d, ForwardAndBackwardMatchReference) {
  for (const PoolCase& cs : kPoolCases) {
    SCOPED_TRACE(cs.str());
    const Var x(testing::random_tensor(cs.x_shape(), 44), true);
    const Var y = F::avg_pool2d(x, cs.options());
    ASSERT_EQ(y.shape(), cs.y_shape());
    // float32 sums of ≤ 16 values in [−1, 1], then one scaling: a few ulps of O(1).
    EXPECT_TRUE(testing::all_close(y.value(), reference::avg_pool2d_forward(cs.dims(), values(x)), 1e-6, 1e-6));
    const Tensor gy = testing::random_tensor(cs.y_shape(), 45);
    autograd::backward(y, gy);
    // Each input gathers ≤ 16 scaled gradients: a few ulps of O(1).
    EXPECT_TRUE(testing::all_close(x.grad(), reference::avg_pool2d_backward(cs.dims(), values(gy)), 1e-6, 1e-6));
  }
}

TEST(AvgPool2d, PaddingCountsInTheDivisor) {
  // 2×2 image of 4s, k 3, padding 1, stride 1: each window sees all four 4s plus five padded zeros,
  // so the mean is 16/9 (PyTorch's count_include_pad = True), not 4.
  const Var y = F::avg_pool2d(Var(Tensor::full({1, 1, 2, 2}, 4.0)), {3, 1, 1});
  EXPECT_TRUE(testing::all_close(y.value(), std::vector<double>(4, 16.0 / 9.0), 1e-6, 0));  // one float division
}

TEST(Pool2d, GradientsMatchFiniteDifferences) {
  const PoolCase cases[] = {{2, 3, 5, 4, 3, 2, 1}, {1, 2, 4, 4, 2, 1, 0}, {1, 1, 5, 5, 2, 2, 1}};
  for (const PoolCase& cs : cases) {
    SCOPED_TRACE(cs.str());
    const nn::Pool2dOptions opt = cs.options();
    // Max pooling is piecewise linear; values spaced 0.05 apart keep the h = 1e-2 steps on one piece.
    EXPECT_TRUE(testing::gradcheck(
        [opt](const std::vector<Var>& v) { return testing::weighted_sum(F::max_pool2d(v[0], opt), 46); },
        {Var(distinct_values(cs.x_shape(), 47, 0.05), true)}));
    EXPECT_TRUE(testing::gradcheck(
        [opt](const std::vector<Var>& v) { return testing::weighted_sum(F::avg_pool2d(v[0], opt), 48); },
        {Var(testing::random_tensor(cs.x_shape(), 49), true)}));
  }
}

TEST(Pool2d, RejectsBadShapesAndHyperparameters) {
  const Var x(testing::random_tensor({2, 3, 6, 6}, 50));
  for (auto pool : {&F::max_pool2d, &F::avg_pool2d}) {
    EXPECT_NO_THROW(pool(x, {3, 2, 1}));
    EXPECT_THROW(pool(Var(testing::random_tensor({3, 6, 6}, 51)), {2, 2, 0}), ShapeError);        // 3-d input
    EXPECT_THROW(pool(Var(Tensor::full({2, 3, 6, 6}, 0.5, DType::F64)), {2, 2, 0}), ShapeError);  // dtype
    EXPECT_THROW(pool(x, {7, 1, 0}), ShapeError);        // kernel larger than the input
    EXPECT_NO_THROW(pool(x, {7, 1, 3}));                 // fits once padded
    EXPECT_THROW(pool(x, {3, 1, 2}), InvalidArgument);   // padding > kernel/2
    EXPECT_THROW(pool(x, {2, 1, -1}), InvalidArgument);  // negative padding
    EXPECT_THROW(pool(x, {0, 1, 0}), InvalidArgument);   // kernel 0
    EXPECT_THROW(pool(x, {2, 0, 0}), InvalidArgument);   // stride 0
  }
  try {
    F::max_pool2d(x, {3, 1, 2});
    ADD_FAILURE() << "padding 2 with kernel 3 accepted";
  } catch (const InvalidArgument& e) {  // the message names the op and the bad value
    const std::string msg = e.what();
    EXPECT_NE(msg.find("max_pool2d"), std::string::npos) << msg;
    EXPECT_NE(msg.find("got 2"), std::string::npos) << msg;
  }
}

// ---- CUDA against the CPU --------------------------------------------------------------------

// One convolution forward and backward on run's device, its outputs registered for comparison:
// cuDNN (full fp32, no TF32) and OpenBLAS sum the same ≤ 512 O(1) products in different orders for
// y and dx; dw and db sum up to N·H'·W' = 4096 products (magnitudes up to ~20).
void run_conv(testing::BackendRun& run, const ConvCase& cs, bool input_only) {
  const Var x(run.input(testing::random_tensor(cs.x_shape(), 60)), true);
  const Var w(run.input(testing::random_tensor(cs.w_shape(), 61)), !input_only);
  const Var b(run.input(testing::random_tensor({cs.o}, 62)), !input_only);
  const Var y = F::conv2d(x, w, b, cs.options());
  autograd::backward(y, run.input(testing::random_tensor(cs.y_shape(), 63)));
  run.check("y", y.value(), {1e-4, 1e-4});
  run.check("dx", x.grad(), {1e-4, 1e-4});
  run.check("dw", w.has_grad() ? w.grad() : Tensor(), {1e-4, 1e-3});
  run.check("db", b.has_grad() ? b.grad() : Tensor(), {1e-4, 1e-3});
}

TEST(Conv2dCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  for (const ConvCase& cs : kConvCases) {
    SCOPED_TRACE(cs.str());
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) { run_conv(run, cs, false); }));
  }
}

TEST(Conv2dCuda, InputOnlyGradientMatchesCpu) {
  AEGIS_REQUIRE_GPU();
  const ConvCase cs{3, 16, 13, 13, 32, 4, 4, 2, 0};
  // dw and db stay undefined on both devices (the harness checks that they agree).
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    run_conv(run, cs, true);
    EXPECT_FALSE(run.outputs()[2].value.defined()) << run.device().str();
    EXPECT_FALSE(run.outputs()[3].value.defined()) << run.device().str();
  }));
}

TEST(Pool2dCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  for (const PoolCase& cs : kPoolCases) {
    SCOPED_TRACE(cs.str());
    const Tensor xt = testing::random_tensor(cs.x_shape(), 64);
    const Tensor gy = testing::random_tensor(cs.y_shape(), 65);
    for (auto pool : {&F::max_pool2d, &F::avg_pool2d}) {
      EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
        const Var x(run.input(xt), true);
        const Var y = pool(x, cs.options());
        autograd::backward(y, run.input(gy));
        // Same selections and the same ≤ 16-term sums, possibly in another order: a few ulps.
        run.check("y", y.value(), {1e-6, 1e-6});
        run.check("dx", x.grad(), {1e-6, 1e-6});
      }));
    }
  }
  // Ties: the GPU must route to the same first maximum as the CPU (exact).
  const Var x_gpu(Tensor::full({1, 1, 3, 3}, 1.5, DType::F32, Device::cuda()), true);
  autograd::backward(F::max_pool2d(x_gpu, {2, 1, 0}),
                     Tensor::from_vector<float>({1.0f, 2.0f, 3.0f, 4.0f}, {1, 1, 2, 2}, Device::cuda()));
  EXPECT_TRUE(testing::all_close(x_gpu.grad(), std::vector<double>{1, 2, 0, 3, 4, 0, 0, 0, 0}, 0, 0));
  // Inference path (no argmax recorded) gives the same maximum.
  const Tensor xt = testing::random_tensor({2, 3, 7, 5}, 66);
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    run.check("y", F::max_pool2d(Var(run.input(xt)), {3, 2, 1}).value(), testing::kExact);
  }));
}

}  // namespace
}  // namespace aegis
