// Softplus, constant 2-d padding and the pooling modes (ceil_mode, count_include_pad = false):
// against naive double-precision references written out here, against finite differences, and
// CUDA against the CPU (skipped without a GPU).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "nn/functional.h"
#include "runtime/autograd.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
namespace F = nn::F;

std::vector<double> values(const Tensor& t) {
  return testing::to_double(t);
}

// ---- Softplus ----------------------------------------------------------------------------------

TEST(Softplus, MatchesLibmWithoutOverflowOrCancellation) {
  std::vector<float> xs;
  for (double x = -30.0; x <= 30.0; x += 0.0137) xs.push_back(static_cast<float>(x));
  // e^x overflows float beyond 88.7; 1 + e^x rounds to 1 below −17: the naive form fails at both ends.
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, 89.0f, 100.0f, 1e4f, -50.0f, -87.0f, -100.0f, -103.0f})
    xs.push_back(x);
  const auto n = static_cast<std::int64_t>(xs.size());
  const Var x(Tensor::from_vector(xs, {n}), true);
  const Var y = F::softplus(x);
  std::vector<double> ref, slope;
  for (float v : xs) {
    const double d = v;
    ref.push_back(std::max(d, 0.0) + std::log1p(std::exp(-std::fabs(d))));
    slope.push_back(1.0 / (1.0 + std::exp(-d)));  // sigmoid(x)
  }
  // A few float ulps relative (the CPU's polynomial exp and log1p, kernels/cpu/fast_math.h), and
  // the result keeps its relative accuracy where it is tiny (x → −∞), hence the tiny atol.
  EXPECT_TRUE(testing::all_close(y.value(), ref, 4e-7, 1e-37));
  autograd::backward(y, Tensor::full({n}, 1.0));
  // The slope through the saved output, 1 − e^−y: y's own rounding (≤ 4e-7 relative) carries
  // into it with a factor y·e^−y/(1 − e^−y) ≤ 1, plus a few ulps of its own.
  EXPECT_TRUE(testing::all_close(x.grad(), slope, 1e-6, 1e-37));
  for (double v : values(y.value())) EXPECT_TRUE(std::isfinite(v));
}

TEST(Softplus, GradientMatchesFiniteDifferences) {
  EXPECT_TRUE(testing::gradcheck([](const std::vector<Var>& v) { return testing::weighted_sum(F::softplus(v[0]), 5); },
                                 {Var(testing::random_tensor({3, 4, 5}, 6, -4.0f, 4.0f), true)}));
}

// ---- Pad ---------------------------------------------------------------------------------------

std::vector<double> pad_reference(const std::vector<double>& x, const Shape& s, const nn::Pad2dOptions& p) {
  const std::int64_t oh = s[2] + p.top + p.bottom, ow = s[3] + p.left + p.right;
  std::vector<double> y(static_cast<std::size_t>(s[0] * s[1] * oh * ow), p.value);
  for (std::int64_t pl = 0; pl < s[0] * s[1]; ++pl)
    for (std::int64_t h = 0; h < s[2]; ++h)
      for (std::int64_t w = 0; w < s[3]; ++w)
        y[static_cast<std::size_t>((pl * oh + h + p.top) * ow + w + p.left)] =
            x[static_cast<std::size_t>((pl * s[2] + h) * s[3] + w)];
  return y;
}

const nn::Pad2dOptions kPads[] = {{0, 0, 1, 1}, {1, 1, 1, 1}, {2, 0, 0, 3}, {0, 0, 0, 0}, {3, 1, 2, 0, -2.5f}};

TEST(Pad2d, ForwardCopiesAndBackwardCrops) {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 4}, Shape{3, 2, 7, 9}}) {
    for (const nn::Pad2dOptions& p : kPads) {
      SCOPED_TRACE(::testing::Message() << shape_str(s) << " pads " << p.top << p.left << p.bottom << p.right);
      const Var x(testing::random_tensor(s, 7), true);
      const Var y = F::pad2d(x, p);
      ASSERT_EQ(y.shape(), (Shape{s[0], s[1], s[2] + p.top + p.bottom, s[3] + p.left + p.right}));
      EXPECT_TRUE(testing::all_close(y.value(), pad_reference(values(x.value()), s, p), 0, 0));  // copies: exact
      const Tensor gy = testing::random_tensor(y.shape(), 8);
      autograd::backward(y, gy);
      // The crop of gy: where the padding of a zero-valued x would be, gy is dropped.
      std::vector<double> expected;
      const std::vector<double> g = values(gy);
      const std::int64_t ow = y.shape()[3], oh = y.shape()[2];
      for (std::int64_t pl = 0; pl < s[0] * s[1]; ++pl)
        for (std::int64_t h = 0; h < s[2]; ++h)
          for (std::int64_t w = 0; w < s[3]; ++w)
            expected.push_back(g[static_cast<std::size_t>((pl * oh + h + p.top) * ow + w + p.left)]);
      EXPECT_TRUE(testing::all_close(x.grad(), expected, 0, 0));
    }
  }
  EXPECT_THROW(F::pad2d(Var(testing::random_tensor({1, 1, 3, 3}, 9)), {0, -1, 0, 0}), InvalidArgument);
  EXPECT_THROW(F::pad2d(Var(testing::random_tensor({3, 3}, 9)), {1, 1, 1, 1}), ShapeError);
}

TEST(Pad2d, MinusInfinityPaddingNeverWinsAMaxPool) {
  // A −∞ pad then an unpadded max pool equals the max pool's own (−∞) padding, values and gradients.
  const Tensor xt = testing::random_tensor({2, 3, 6, 5}, 10, -3.0f, -1.0f);
  const Var a(xt, true), b(xt, true);
  const float inf = std::numeric_limits<float>::infinity();
  const Var ya = F::max_pool2d(F::pad2d(a, {1, 1, 1, 1, -inf}), {3, 2, 0});
  const Var yb = F::max_pool2d(b, {3, 2, 1});
  EXPECT_TRUE(testing::all_close(ya.value(), yb.value(), 0, 0));
  const Tensor gy = testing::random_tensor(yb.shape(), 11);
  autograd::backward(ya, gy);
  autograd::backward(yb, gy);
  EXPECT_TRUE(testing::all_close(a.grad(), b.grad(), 0, 0));
}

// ---- pooling modes -----------------------------------------------------------------------------

struct ModeCase {
  std::int64_t n, c, h, w, k, stride, pad;
  bool ceil, include_pad;
  Shape x_shape() const { return {n, c, h, w}; }
  nn::Pool2dOptions options() const { return {k, stride, pad, ceil, include_pad}; }
  std::string str() const {
    std::ostringstream os;
    os << "x[" << n << "," << c << "," << h << "," << w << "] k " << k << " s " << stride << " p " << pad
       << (ceil ? " ceil" : " floor") << (include_pad ? " include_pad" : " exclude_pad");
    return os.str();
  }
};

// Output size by the PyTorch/onnxruntime rule, written independently of kernels/pool.h.
std::int64_t out_size(std::int64_t size, const ModeCase& m) {
  const double span = static_cast<double>(size + 2 * m.pad - m.k) / static_cast<double>(m.stride);
  auto out = static_cast<std::int64_t>(m.ceil ? std::ceil(span) : std::floor(span)) + 1;
  if (m.ceil && (out - 1) * m.stride >= size + m.pad) --out;  // no window starting in the right padding
  return out;
}

// Naive pooling: each window's real elements (and its count of positions inside [−p, size + p)
// for include_pad); max: the first maximum; avg: the mean over that divisor. Returns y and dx for gy.
struct PoolResult {
  std::vector<double> y_max, dx_max, y_avg, dx_avg;
};
PoolResult pool_reference(const ModeCase& m, const std::vector<double>& x, const std::vector<double>& gy) {
  const std::int64_t oh = out_size(m.h, m), ow = out_size(m.w, m);
  PoolResult r;
  r.dx_max.assign(x.size(), 0.0);
  r.dx_avg.assign(x.size(), 0.0);
  std::size_t o = 0;
  for (std::int64_t pl = 0; pl < m.n * m.c; ++pl)
    for (std::int64_t i = 0; i < oh; ++i)
      for (std::int64_t j = 0; j < ow; ++j, ++o) {
        std::vector<std::size_t> real;
        std::int64_t padded = 0;
        for (std::int64_t a = 0; a < m.k; ++a)
          for (std::int64_t b = 0; b < m.k; ++b) {
            const std::int64_t r_ = i * m.stride - m.pad + a, q = j * m.stride - m.pad + b;
            const bool in_padded = r_ < m.h + m.pad && q < m.w + m.pad;  // r_, q ≥ −p always
            if (in_padded) ++padded;
            if (r_ >= 0 && r_ < m.h && q >= 0 && q < m.w)
              real.push_back(static_cast<std::size_t>((pl * m.h + r_) * m.w + q));
          }
        std::size_t best = real.at(0);  // at() fails the test if a window holds no real element
        double sum = 0.0;
        for (std::size_t e : real) {
          if (x[e] > x[best]) best = e;
          sum += x[e];
        }
        const double divisor = m.include_pad ? static_cast<double>(padded) : static_cast<double>(real.size());
        r.y_max.push_back(x[best]);
        r.dx_max[best] += gy[o];
        r.y_avg.push_back(sum / divisor);
        for (std::size_t e : real) r.dx_avg[e] += gy[o] / divisor;
      }
  return r;
}

const ModeCase kModeCases[] = {
    {1, 1, 5, 5, 2, 2, 1, true, true},    // ceil's extra window dropped: it would start in the padding
    {2, 3, 12, 11, 3, 2, 1, true, true},  // an overhanging last row window (divisor 2 rows)
    {2, 3, 6, 7, 3, 2, 0, true, false},   // overhang without padding, real-element divisor
    {1, 2, 7, 7, 3, 3, 1, true, false},   // stride = kernel, overhang on both axes
    {2, 2, 5, 8, 3, 2, 1, false, false},  // exclude_pad without ceil: border windows divide by 4 or 6
    {3, 2, 6, 6, 4, 1, 2, false, false},  // the largest padding (k/2), overlapping windows
    {1, 1, 1, 1, 1, 1, 0, true, false},   // one element
    {2, 4, 9, 10, 2, 2, 1, true, false},  // odd height: ceil adds a window only there
    {32, 3, 6, 6, 3, 2, 1, false, true},  // the default mode, large batch
};

TEST(PoolModes, ForwardAndBackwardMatchReference) {
  for (const ModeCase& m : kModeCases) {
    SCOPED_TRACE(m.str());
    // Distinct values keep the max selection unambiguous.
    const Tensor xt = testing::random_tensor(m.x_shape(), 12);
    const Shape y_shape{m.n, m.c, out_size(m.h, m), out_size(m.w, m)};
    const Tensor gy = testing::random_tensor(y_shape, 13);
    const PoolResult ref = pool_reference(m, values(xt), values(gy));
    const Var xm(xt, true), xa(xt, true);
    const Var ym = F::max_pool2d(xm, m.options()), ya = F::avg_pool2d(xa, m.options());
    ASSERT_EQ(ym.shape(), y_shape);
    ASSERT_EQ(ya.shape(), y_shape);
    EXPECT_TRUE(testing::all_close(ym.value(), ref.y_max, 0, 0));  // a selection: exact
    // float32 sums of ≤ 16 values in [−1, 1] and one scaling: a few ulps of O(1).
    EXPECT_TRUE(testing::all_close(ya.value(), ref.y_avg, 1e-6, 1e-6));
    autograd::backward(ym, gy);
    autograd::backward(ya, gy);
    EXPECT_TRUE(testing::all_close(xm.grad(), ref.dx_max, 1e-6, 1e-6));  // ≤ 4 overlapping windows add
    EXPECT_TRUE(testing::all_close(xa.grad(), ref.dx_avg, 1e-6, 1e-6));
  }
}

TEST(PoolModes, ExcludePadDividesByTheRealElements) {
  // 2×2 image of 4s, k 3, p 1, stride 1: each window holds the four 4s and five padded positions.
  const nn::Pool2dOptions opt{3, 1, 1, false, false};
  EXPECT_TRUE(testing::all_close(F::avg_pool2d(Var(Tensor::full({1, 1, 2, 2}, 4.0)), opt).value(),
                                 std::vector<double>(4, 4.0), 0, 0));  // 16/4 exactly
}

TEST(PoolModes, GradientsMatchFiniteDifferences) {
  for (const ModeCase& m : {kModeCases[1], kModeCases[3], kModeCases[4]}) {
    SCOPED_TRACE(m.str());
    const nn::Pool2dOptions opt = m.options();
    EXPECT_TRUE(testing::gradcheck(
        [opt](const std::vector<Var>& v) { return testing::weighted_sum(F::avg_pool2d(v[0], opt), 14); },
        {Var(testing::random_tensor(m.x_shape(), 15), true)}));
  }
}

// ---- CUDA against the CPU ----------------------------------------------------------------------

TEST(PoolPadCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  for (const std::int64_t n : testing::kOddSizes) {
    const Tensor xt = testing::random_tensor({n}, 16, -30.0f, 30.0f), gy = testing::random_tensor({n}, 17);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const Var x(run.input(xt), true);
      const Var y = F::softplus(x);
      autograd::backward(y, run.input(gy));
      // libm's and CUDA's log1p/exp/expm1 each within a few ulps: a few float ulps relative.
      run.check("softplus", y.value(), {2e-6, 1e-30});
      run.check("softplus dx", x.grad(), {2e-6, 1e-30});
    }));
  }
  for (const nn::Pad2dOptions& p : kPads) {
    const Tensor xt = testing::random_tensor({3, 5, 7, 6}, 18);
    const Tensor gy = testing::random_tensor({3, 5, 7 + p.top + p.bottom, 6 + p.left + p.right}, 19);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const Var x(run.input(xt), true);
      const Var y = F::pad2d(x, p);
      autograd::backward(y, run.input(gy));
      run.check("pad", y.value(), testing::kExact);  // copies
      run.check("pad dx", x.grad(), testing::kExact);
    }));
  }
  for (const ModeCase& m : kModeCases) {
    SCOPED_TRACE(m.str());
    const Tensor xt = testing::random_tensor(m.x_shape(), 20);
    const Tensor gy = testing::random_tensor({m.n, m.c, out_size(m.h, m), out_size(m.w, m)}, 21);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const Var xm(run.input(xt), true), xa(run.input(xt), true);
      const Var ym = F::max_pool2d(xm, m.options()), ya = F::avg_pool2d(xa, m.options());
      autograd::backward(ym, run.input(gy));
      autograd::backward(ya, run.input(gy));
      // The same selections and ≤ 16-term sums, possibly in another order: a few ulps.
      run.check("max y", ym.value(), testing::kExact);
      run.check("max dx", xm.grad(), {1e-6, 1e-6});
      run.check("avg y", ya.value(), {1e-6, 1e-6});
      run.check("avg dx", xa.grad(), {1e-6, 1e-6});
    }));
  }
}

}  // namespace
}  // namespace aegis
