// GroupNorm, softmax cross-entropy, argmax and count_correct: the CPU backend against the
// double-precision references in tests/reference/norm_loss.h and against finite differences;
// the CUDA backend against the CPU one (skipped without a GPU).
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "nn/functional.h"
#include "reference/norm_loss.h"
#include "runtime/autograd.h"
#include "runtime/ops.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
namespace F = nn::F;

// Passes when fn throws E and the message contains `needle`.
template <class E>
::testing::AssertionResult throws_with(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const E& e) {
    if (std::string(e.what()).find(needle) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "message lacks \"" << needle << "\": " << e.what();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "wrong exception type: " << e.what();
  }
  return ::testing::AssertionFailure() << "nothing thrown";
}

std::vector<std::int32_t> random_labels(std::int64_t n, std::int64_t k, std::uint64_t seed) {
  const std::vector<float> u = testing::random_tensor({n}, seed, 0.0f, 1.0f).to_vector<float>();
  std::vector<std::int32_t> y(u.size());
  for (std::size_t i = 0; i < u.size(); ++i)
    y[i] = static_cast<std::int32_t>(std::min<std::int64_t>(k - 1, static_cast<std::int64_t>(u[i] * k)));
  return y;
}

Tensor labels_tensor(const std::vector<std::int32_t>& y) {
  return Tensor::from_vector<std::int32_t>(y, {static_cast<std::int64_t>(y.size())});
}

// ---------------------------------------------------------------------------------------------
// GroupNorm

struct GnCase {
  Shape shape;
  std::int64_t groups;
  bool affine;
  float lo = -1.0f, hi = 1.0f;  // range of the random input
};

std::int64_t spatial_of(const Shape& s) { return shape_numel(Shape(s.begin() + 2, s.end())); }

const std::vector<GnCase>& gn_cases() {
  static const std::vector<GnCase> cases = {
      {{4, 6}, 2, true},                         // [N, C]: no spatial dims
      {{3, 6, 5, 7}, 3, true},                   // odd spatial sizes
      {{1, 4, 3, 3}, 1, false},                  // batch 1, one group, no affine map
      {{2, 5, 3, 1}, 5, true},                   // G = C
      {{5, 8, 9, 11}, 4, true, 100.0f, 101.0f},  // large common offset: the variance must not cancel
      {{2, 3, 2, 3, 5}, 3, false},               // three spatial dims
  };
  return cases;
}

struct GnInputs {
  Var x, gamma, beta;
  std::vector<double> gamma_d, beta_d;  // empty without affine
};

GnInputs gn_inputs(const GnCase& tc, std::uint64_t seed, bool grad_x, bool grad_affine, Device dev = Device::cpu()) {
  GnInputs in;
  in.x = Var(testing::random_tensor(tc.shape, seed, tc.lo, tc.hi).to(dev), grad_x);
  if (tc.affine) {
    const Tensor g = testing::random_tensor({tc.shape[1]}, seed + 1, 0.5f, 1.5f);
    const Tensor b = testing::random_tensor({tc.shape[1]}, seed + 2, -0.5f, 0.5f);
    in.gamma = Var(g.to(dev), grad_affine);
    in.beta = Var(b.to(dev), grad_affine);
    in.gamma_d = testing::to_double(g);
    in.beta_d = testing::to_double(b);
  }
  return in;
}

TEST(GroupNorm, ForwardMatchesReference) {
  std::uint64_t seed = 100;
  for (const GnCase& tc : gn_cases()) {
    SCOPED_TRACE(shape_str(tc.shape) + " groups " + std::to_string(tc.groups));
    const GnInputs in = gn_inputs(tc, seed += 10, false, false);
    const Var y = F::group_norm(in.x, tc.groups, in.gamma, in.beta, 1e-5f);
    EXPECT_EQ(y.shape(), tc.shape);
    EXPECT_FALSE(y.requires_grad());
    const auto ref = reference::group_norm_forward(testing::to_double(in.x.value()), tc.shape[0], tc.shape[1],
                                                   spatial_of(tc.shape), tc.groups, in.gamma_d, in.beta_d, 1e-5);
    // Statistics are accumulated in double on the CPU; only the float32 rounding of y remains.
    EXPECT_TRUE(testing::all_close(y.value(), ref.y, 1e-5, 1e-5));
  }
}

TEST(GroupNorm, BackwardMatchesReference) {
  std::uint64_t seed = 200;
  for (const GnCase& tc : gn_cases()) {
    SCOPED_TRACE(shape_str(tc.shape) + " groups " + std::to_string(tc.groups));
    const GnInputs in = gn_inputs(tc, seed += 10, true, true);
    const Var y = F::group_norm(in.x, tc.groups, in.gamma, in.beta, 1e-5f);
    const Tensor gy = testing::random_tensor(tc.shape, seed + 5);
    autograd::backward(y, gy);
    const std::int64_t n = tc.shape[0], c = tc.shape[1], s = spatial_of(tc.shape);
    const auto fwd = reference::group_norm_forward(testing::to_double(in.x.value()), n, c, s, tc.groups, in.gamma_d,
                                                   in.beta_d, 1e-5);
    const auto ref = reference::group_norm_backward(testing::to_double(gy), fwd, n, c, s, tc.groups, in.gamma_d);
    // Double sums in the kernel; the difference ĝ − mean(ĝ) − x̂·mean(ĝx̂) cancels to O(1e-1)
    // values, so allow a few float32 ulps relative and 1e-5 absolute.
    EXPECT_TRUE(testing::all_close(in.x.grad(), ref.dx, 1e-4, 1e-5));
    if (tc.affine) {
      EXPECT_TRUE(testing::all_close(in.gamma.grad(), ref.dgamma, 1e-5, 1e-5));  // double sums, float result
      EXPECT_TRUE(testing::all_close(in.beta.grad(), ref.dbeta, 1e-5, 1e-5));
    }
  }
}

TEST(GroupNorm, MatchesFiniteDifferences) {
  // Groups of 18, 3 and 30 elements with O(1) spread: x̂ has curvature O(rstd²) ≈ 3, so the
  // default h = 1e-2 keeps the O(h²) truncation well inside the default tolerances.
  const std::vector<GnCase> cases = {{{2, 4, 3, 3}, 2, true}, {{3, 6}, 2, true}, {{1, 6, 5}, 1, false}};
  std::uint64_t seed = 300;
  for (const GnCase& tc : cases) {
    SCOPED_TRACE(shape_str(tc.shape));
    const GnInputs in = gn_inputs(tc, seed += 10, true, true);
    const std::int64_t groups = tc.groups;
    const std::vector<Var> vars = tc.affine ? std::vector<Var>{in.x, in.gamma, in.beta} : std::vector<Var>{in.x};
    EXPECT_TRUE(testing::gradcheck(
        [groups](const std::vector<Var>& v) {
          const Var y =
              v.size() == 3 ? F::group_norm(v[0], groups, v[1], v[2]) : F::group_norm(v[0], groups, Var(), Var());
          return testing::weighted_sum(y, 17);
        },
        vars));
  }
}

TEST(GroupNorm, InputOnlyAndParameterOnlyGradients) {
  const GnCase tc{{3, 6, 4, 5}, 3, true};
  const std::int64_t n = 3, c = 6, s = 20;
  const Tensor gy = testing::random_tensor(tc.shape, 401);
  {
    // Attack setting: only the input requires a gradient.
    const GnInputs in = gn_inputs(tc, 410, true, false);
    autograd::backward(F::group_norm(in.x, tc.groups, in.gamma, in.beta), gy);
    EXPECT_FALSE(in.gamma.has_grad());
    EXPECT_FALSE(in.beta.has_grad());
    const auto fwd = reference::group_norm_forward(testing::to_double(in.x.value()), n, c, s, tc.groups, in.gamma_d,
                                                   in.beta_d, 1e-5);
    const auto ref = reference::group_norm_backward(testing::to_double(gy), fwd, n, c, s, tc.groups, in.gamma_d);
    EXPECT_TRUE(testing::all_close(in.x.grad(), ref.dx, 1e-4, 1e-5));  // as in BackwardMatchesReference
  }
  {
    // Frozen input (a first layer's data): only γ and β receive gradients.
    const GnInputs in = gn_inputs(tc, 420, false, true);
    autograd::backward(F::group_norm(in.x, tc.groups, in.gamma, in.beta), gy);
    EXPECT_FALSE(in.x.has_grad());
    const auto fwd = reference::group_norm_forward(testing::to_double(in.x.value()), n, c, s, tc.groups, in.gamma_d,
                                                   in.beta_d, 1e-5);
    const auto ref = reference::group_norm_backward(testing::to_double(gy), fwd, n, c, s, tc.groups, in.gamma_d);
    EXPECT_TRUE(testing::all_close(in.gamma.grad(), ref.dgamma, 1e-5, 1e-5));  // double sums, float result
    EXPECT_TRUE(testing::all_close(in.beta.grad(), ref.dbeta, 1e-5, 1e-5));
  }
}

TEST(GroupNorm, CaptureHoldsNormalizedInputAndOutputGradient) {
  const GnCase tc{{4, 6, 3, 5}, 2, true};
  const std::int64_t n = 4, c = 6, s = 15;
  const GnInputs in = gn_inputs(tc, 500, true, true);
  nn::LayerCapture capture;
  capture.enabled = true;
  const Tensor gy = testing::random_tensor(tc.shape, 501);
  autograd::backward(F::group_norm(in.x, tc.groups, in.gamma, in.beta, 1e-5f, &capture), gy);
  ASSERT_TRUE(capture.activation.defined());
  ASSERT_TRUE(capture.output_grad.defined());
  EXPECT_EQ(capture.activation.shape(), tc.shape);
  const auto fwd =
      reference::group_norm_forward(testing::to_double(in.x.value()), n, c, s, tc.groups, in.gamma_d, in.beta_d, 1e-5);
  EXPECT_TRUE(testing::all_close(capture.activation, fwd.xhat, 1e-5, 1e-5));  // float32 rounding of x̂ only
  EXPECT_TRUE(testing::all_close(capture.output_grad, gy, 0.0, 0.0));         // the very gradient, untouched
  // Per-example dγ_i[c] = Σ_s x̂_i·g_i summed over i must give the batch gradient.
  const std::vector<double> a = testing::to_double(capture.activation), g = testing::to_double(capture.output_grad);
  std::vector<double> dgamma(c, 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t p = 0; p < s; ++p) dgamma[ch] += a[(i * c + ch) * s + p] * g[(i * c + ch) * s + p];
  EXPECT_TRUE(testing::all_close(in.gamma.grad(), dgamma, 1e-5, 1e-5));  // same sums, different order

  nn::LayerCapture disabled;
  const GnInputs in2 = gn_inputs(tc, 510, true, true);
  autograd::backward(F::group_norm(in2.x, tc.groups, in2.gamma, in2.beta, 1e-5f, &disabled), gy);
  EXPECT_FALSE(disabled.activation.defined());
  EXPECT_FALSE(disabled.output_grad.defined());
}

TEST(GroupNorm, RejectsBadArguments) {
  const Var x(testing::random_tensor({2, 6, 3}, 600));
  const Var gamma(testing::random_tensor({6}, 601)), beta(testing::random_tensor({6}, 602));
  EXPECT_TRUE(throws_with<ShapeError>([&] { F::group_norm(x, 4, gamma, beta); }, "do not split into 4 groups"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { F::group_norm(x, 3, Var(testing::random_tensor({5}, 603)), beta); },
                                      "group_norm gamma: expected shape [6]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { F::group_norm(x, 3, gamma, Var()); }, "both be given or both be omitted"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { F::group_norm(Var(testing::random_tensor({6}, 604)), 3, Var(), Var()); },
                                      "input must be [N, C, *]"));
  EXPECT_TRUE(
      throws_with<InvalidArgument>([&] { F::group_norm(x, 0, gamma, beta); }, "groups must be positive, got 0"));
  EXPECT_TRUE(throws_with<InvalidArgument>([&] { F::group_norm(x, 3, gamma, beta, -1.0f); }, "eps"));
  Tensor x64 = Tensor::full({2, 6}, 0.5, DType::F64);
  EXPECT_TRUE(throws_with<ShapeError>([&] { F::group_norm(Var(x64), 3, Var(), Var()); }, "expected dtype f32"));
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

struct CeCase {
  std::int64_t n, k;
  float lo, hi;
};

std::vector<double> reduce_ref(const std::vector<double>& rows, nn::Reduction r) {
  if (r == nn::Reduction::None) return rows;
  double s = 0.0;
  for (double v : rows) s += v;
  return {r == nn::Reduction::Mean ? s / static_cast<double>(rows.size()) : s};
}

const nn::Reduction kReductions[] = {nn::Reduction::Mean, nn::Reduction::Sum, nn::Reduction::None};

TEST(CrossEntropy, ForwardMatchesReference) {
  const CeCase cases[] = {{7, 10, -3, 3}, {1, 3, -3, 3}, {33, 129, -5, 5}, {4, 6, 990, 1010}, {5, 4, -1000, 1000}};
  std::uint64_t seed = 700;
  for (const CeCase& tc : cases) {
    const Tensor z = testing::random_tensor({tc.n, tc.k}, seed += 10, tc.lo, tc.hi);
    const auto y = random_labels(tc.n, tc.k, seed + 1);
    const auto rows = reference::cross_entropy_rows(testing::to_double(z), y, tc.n, tc.k);
    for (nn::Reduction r : kReductions) {
      SCOPED_TRACE("n " + std::to_string(tc.n) + " k " + std::to_string(tc.k) + " reduction " +
                   std::to_string(static_cast<int>(r)));
      const Var loss = F::cross_entropy(Var(z), labels_tensor(y), r);
      EXPECT_EQ(loss.shape(), (r == nn::Reduction::None ? Shape{tc.n} : Shape{1}));
      EXPECT_EQ(ops::count_nonfinite(loss.value()), 0);
      // Row sums in double; float32 rounding of the result and of (m − z_y) up to |2000|.
      EXPECT_TRUE(testing::all_close(loss.value(), reduce_ref(rows, r), 1e-6, 1e-5));
    }
  }
}

TEST(CrossEntropy, LargeLogitsAgreeWithClosedForm) {
  // Row 0: z = (1000, 999, 998), label 0 ⇒ loss = log(1 + e⁻¹ + e⁻²); label 2 adds 2.
  // Row 2: two equal logits of −1000 ⇒ loss = log 2. A naive exp would overflow or underflow.
  const Tensor z = Tensor::from_vector<float>({1000, 999, 998, 1000, 999, 998, -1000, -1000, -1001}, {3, 3});
  const Var loss = F::cross_entropy(Var(z), labels_tensor({0, 2, 1}), nn::Reduction::None);
  const double base = std::log(1.0 + std::exp(-1.0) + std::exp(-2.0));
  const double row2 = std::log(2.0 + std::exp(-1.0));
  EXPECT_TRUE(testing::all_close(loss.value(), {base, 2.0 + base, row2}, 1e-6, 1e-6));  // exact inputs, float result
}

TEST(CrossEntropy, BackwardMatchesReference) {
  const CeCase cases[] = {{7, 10, -3, 3}, {1, 3, -3, 3}, {33, 129, -5, 5}, {4, 6, 990, 1010}};
  std::uint64_t seed = 800;
  for (const CeCase& tc : cases) {
    const Tensor z = testing::random_tensor({tc.n, tc.k}, seed += 10, tc.lo, tc.hi);
    const auto y = random_labels(tc.n, tc.k, seed + 1);
    for (nn::Reduction r : kReductions) {
      SCOPED_TRACE("n " + std::to_string(tc.n) + " k " + std::to_string(tc.k) + " reduction " +
                   std::to_string(static_cast<int>(r)));
      Var logits(z, true);
      const Var loss = F::cross_entropy(logits, labels_tensor(y), r);
      const Tensor seed_grad = testing::random_tensor(loss.shape(), seed + 2, 0.5f, 2.0f);
      autograd::backward(loss, seed_grad);
      const std::vector<double> g = testing::to_double(seed_grad);
      std::vector<double> weight(tc.n);
      for (std::int64_t i = 0; i < tc.n; ++i)
        weight[i] = r == nn::Reduction::None ? g[i] : (r == nn::Reduction::Mean ? g[0] / tc.n : g[0]);
      // Softmax in double, one float32 rounding per element: probabilities carry 1e-7 absolute.
      EXPECT_TRUE(testing::all_close(
          logits.grad(), reference::cross_entropy_grad(testing::to_double(z), y, tc.n, tc.k, weight), 1e-5, 1e-6));
    }
  }
}

TEST(CrossEntropy, MatchesFiniteDifferences) {
  const auto y = random_labels(4, 5, 901);
  for (nn::Reduction r : kReductions) {
    std::vector<Var> vars{Var(testing::random_tensor({4, 5}, 900, -2.0f, 2.0f), true)};
    // Defaults: log-softmax has curvature ≤ 1/4 per logit, so h = 1e-2 truncates at ~1e-5.
    EXPECT_TRUE(testing::gradcheck(
        [&y, r](const std::vector<Var>& v) {
          const Var loss = F::cross_entropy(v[0], labels_tensor(y), r);
          return r == nn::Reduction::None ? testing::weighted_sum(loss, 19) : loss;
        },
        vars));
  }
}

TEST(CrossEntropy, EmptyBatch) {
  const Tensor z = Tensor::empty({0, 5});
  const Tensor y = Tensor::empty({0}, DType::I32);
  EXPECT_TRUE(throws_with<InvalidArgument>([&] { F::cross_entropy(Var(z), y, nn::Reduction::Mean); },
                                           "mean over an empty batch"));
  const Var sum = F::cross_entropy(Var(z), y, nn::Reduction::Sum);
  EXPECT_EQ(sum.shape(), Shape{1});
  EXPECT_EQ(sum.value().item(), 0.0);
  EXPECT_EQ(F::cross_entropy(Var(z), y, nn::Reduction::None).shape(), Shape{0});
}

TEST(CrossEntropy, RejectsBadLabelsAndLogits) {
  const Var z(testing::random_tensor({5, 10}, 950));
  EXPECT_TRUE(throws_with<ShapeError>([&] { F::cross_entropy(z, testing::random_tensor({5}, 951, 0, 9)); },
                                      "cross_entropy labels: expected dtype i32"));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        F::cross_entropy(z, Tensor::from_vector<std::int32_t>({1, 2, 3, 4, 5}, {5, 1}));
      },
      "expected shape [5]"));
  EXPECT_TRUE(throws_with<ShapeError>([&] { F::cross_entropy(z, labels_tensor({1, 2, 3, 4})); }, "expected shape [5]"));
  EXPECT_TRUE(throws_with<InvalidArgument>(
      [&] {
        F::cross_entropy(z, labels_tensor({1, 2, 3, 10, 11}));
      },
      "label 10 at index 3"));
  EXPECT_TRUE(throws_with<InvalidArgument>(
      [&] {
        F::cross_entropy(z, labels_tensor({-1, 2, 3, 4, 5}));
      },
      "label -1 at index 0"));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] { F::cross_entropy(Var(testing::random_tensor({5}, 952)), labels_tensor({1})); }, "expected a 2-d tensor"));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        F::cross_entropy(Var(Tensor::empty({2, 0})), labels_tensor({0, 0}));
      },
      "at least one class"));
}

// ---------------------------------------------------------------------------------------------
// argmax and count_correct

TEST(Argmax, FirstMaximumOnTiesAndNaNWins) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor z = Tensor::from_vector<float>({1,  3,   3,  2,    //
                                               5,  5,   5,  5,    //
                                               -1, -2,  -3, -1,   //
                                               1,  nan, 3,  nan,  //
                                               -7, -6,  -5, -4},
                                              {5, 4});
  const Tensor am = nn::argmax(z);
  EXPECT_EQ(am.dtype(), DType::I32);
  EXPECT_EQ(am.to_vector<std::int32_t>(), (std::vector<std::int32_t>{1, 0, 0, 1, 3}));
  EXPECT_EQ(nn::count_correct(z, labels_tensor({1, 1, 0, 1, 3})), 4);
}

TEST(Argmax, MatchesReferenceAndCountsCorrectRows) {
  for (auto [n, k] : {std::pair<std::int64_t, std::int64_t>{37, 13}, {1, 1}, {9, 70}}) {
    const Tensor z = testing::random_tensor({n, k}, 1000 + n);
    const auto ref = reference::argmax_rows(testing::to_double(z), n, k);
    EXPECT_EQ(nn::argmax(z).to_vector<std::int32_t>(), ref);
    // Labels equal to the argmax on even rows, shifted by one on odd rows (always wrong when k > 1),
    // plus one label out of range, which counts as wrong.
    std::vector<std::int32_t> y = ref;
    std::int64_t expected = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      if (i % 2 == 1 && k > 1) y[i] = static_cast<std::int32_t>((ref[i] + 1) % k);
      if (i == n - 1 && n > 1) y[i] = static_cast<std::int32_t>(k + 3);
      expected += y[i] == ref[i] ? 1 : 0;
    }
    EXPECT_EQ(nn::count_correct(z, labels_tensor(y)), expected);
  }
  EXPECT_THROW(nn::argmax(testing::random_tensor({4}, 1)), ShapeError);
  EXPECT_THROW(nn::count_correct(testing::random_tensor({3, 4}, 1), labels_tensor({1, 2})), ShapeError);
}

// ---------------------------------------------------------------------------------------------
// CUDA against CPU

TEST(GroupNormCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  const std::vector<GnCase> cases = {{{64, 32, 17, 19}, 8, true},
                                     {{4, 6}, 2, true},
                                     {{2, 5, 3, 1}, 5, true},
                                     {{1, 4, 1}, 1, false},
                                     {{5, 8, 9, 11}, 4, true, 100.0f, 101.0f},
                                     {{3, 12, 40, 41}, 1, true}};
  std::uint64_t seed = 1100;
  for (const GnCase& tc : cases) {
    SCOPED_TRACE(shape_str(tc.shape) + " groups " + std::to_string(tc.groups));
    seed += 10;
    const Tensor gy = testing::random_tensor(tc.shape, seed + 5);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const GnInputs in = gn_inputs(tc, seed, true, true, run.device());
      nn::LayerCapture cap{true, {}, {}};
      const Var y = F::group_norm(in.x, tc.groups, in.gamma, in.beta, 1e-5f, &cap);
      // float32 block reductions over ≤ 20k elements vs double; the offset case loses ~1e-5 of x̂ to
      // the rounding of μ ≈ 100.
      run.check("y", y.value(), {1e-4, 1e-4});
      autograd::backward(y, run.input(gy));
      run.check("x̂", cap.activation, {1e-4, 1e-4});
      run.check("dx", in.x.grad(), {1e-3, 1e-4});  // as above, via rstd
      if (tc.affine) {
        // dγ, dβ sum up to 64·17·19 ≈ 2·10⁴ float32 products in a tree: |error| ≲ 1e-3.
        run.check("dgamma", in.gamma.grad(), {1e-4, 1e-3});
        run.check("dbeta", in.beta.grad(), {1e-4, 1e-3});
      }
    }));
  }
}

TEST(CrossEntropyCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  const CeCase cases[] = {{1, 3, -3, 3}, {37, 10, -3, 3}, {9, 33, -5, 5}, {513, 1000, -4, 4}, {70, 7, -1000, 1000}};
  std::uint64_t seed = 1200;
  for (const CeCase& tc : cases) {
    const Tensor z = testing::random_tensor({tc.n, tc.k}, seed += 10, tc.lo, tc.hi);
    const Tensor y = labels_tensor(random_labels(tc.n, tc.k, seed + 1));
    for (nn::Reduction r : kReductions) {
      SCOPED_TRACE("n " + std::to_string(tc.n) + " k " + std::to_string(tc.k) + " reduction " +
                   std::to_string(static_cast<int>(r)));
      const Tensor g = testing::random_tensor(F::cross_entropy(Var(z), y, r).shape(), seed + 2, 0.5f, 2.0f);
      EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
        Var z_on(run.input(z), true);
        const Var loss = F::cross_entropy(z_on, run.input(y), r);
        // expf and float32 sums of ≤ 1000 exponentials (and of ≤ 513 losses) vs double sums.
        run.check("loss", loss.value(), {1e-5, 1e-5});
        autograd::backward(loss, run.input(g));
        // Probabilities in float32 with expf: ~1e-7 absolute, amplified ≤ 2 by the seed.
        run.check("dz", z_on.grad(), {1e-4, 1e-6});
      }));
    }
  }
  // Labels are validated on the host even when they live on the GPU.
  const Tensor z = testing::random_tensor({3, 4}, 1290).to(Device::cuda());
  EXPECT_TRUE(throws_with<InvalidArgument>(
      [&] {
        F::cross_entropy(Var(z), labels_tensor({0, 4, 1}).to(Device::cuda()));
      },
      "label 4 at index 1"));
  EXPECT_THROW(F::cross_entropy(Var(z), labels_tensor({0, 1, 1})), ShapeError);  // labels on the wrong device
}

TEST(ArgmaxCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  for (auto [n, k] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {37, 13}, {300, 70}, {5, 1000}}) {
    // Coarse logits (multiples of 1/4 in [−1, 1]) make ties common, across warp lanes too.
    std::vector<float> v = testing::random_tensor({n, k}, 1300 + n).to_vector<float>();
    for (float& e : v) e = std::round(e * 4.0f) / 4.0f;
    if (n > 2) v[static_cast<std::size_t>(2 * k + k / 2)] = std::numeric_limits<float>::quiet_NaN();
    const Tensor z = Tensor::from_vector<float>(v, {n, k});
    const Tensor y = labels_tensor(random_labels(n, k, 1350 + n));
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const Tensor d_z = run.input(z);
      run.check("argmax", nn::argmax(d_z), testing::kExact);
      const std::int64_t correct = nn::count_correct(d_z, run.input(y));
      run.check("correct", Tensor::from_vector<std::int64_t>({correct}, {1}), testing::kExact);
    }));
  }
}

}  // namespace
}  // namespace aegis
