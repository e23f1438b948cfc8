// Probability-row ops (kernels/softmax.h) and the consistency regularizer built from them: the CPU
// backend against double-precision formulas written out here and against finite differences; the
// CUDA backend against the CPU one (skipped without a GPU).
#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "nn/functional.h"
#include "runtime/autograd.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
namespace F = nn::F;

// Row-wise softmax in double.
std::vector<double> softmax_ref(const std::vector<double>& z, std::int64_t rows, std::int64_t cols) {
  std::vector<double> p(z.size());
  for (std::int64_t i = 0; i < rows; ++i) {
    double m = -INFINITY, s = 0.0;
    for (std::int64_t j = 0; j < cols; ++j) m = std::max(m, z[i * cols + j]);
    for (std::int64_t j = 0; j < cols; ++j) s += std::exp(z[i * cols + j] - m);
    for (std::int64_t j = 0; j < cols; ++j) p[i * cols + j] = std::exp(z[i * cols + j] - m) / s;
  }
  return p;
}

// R_b of nn::F::consistency_regularizer, straight from the definition, in double.
std::vector<double> consistency_ref(const std::vector<double>& z, std::int64_t copies, std::int64_t cols, double lambda,
                                    double eta) {
  const auto rows = static_cast<std::int64_t>(z.size()) / cols;
  const std::vector<double> p = softmax_ref(z, rows, cols);
  std::vector<double> out;
  for (std::int64_t b = 0; b < rows / copies; ++b) {
    std::vector<double> mean(static_cast<std::size_t>(cols), 0.0);
    for (std::int64_t k = 0; k < copies; ++k)
      for (std::int64_t j = 0; j < cols; ++j) mean[j] += p[(b * copies + k) * cols + j] / copies;
    double kl = 0.0, h = 0.0;
    for (std::int64_t k = 0; k < copies; ++k)
      for (std::int64_t j = 0; j < cols; ++j) kl += mean[j] * std::log(mean[j] / p[(b * copies + k) * cols + j]);
    for (std::int64_t j = 0; j < cols; ++j) h -= mean[j] * std::log(mean[j]);
    out.push_back(lambda * kl / copies + eta * h);
  }
  return out;
}

TEST(SoftmaxOps, SoftmaxAndLogSoftmaxMatchTheDefinition) {
  for (auto [rows, cols, offset] : std::vector<std::tuple<std::int64_t, std::int64_t, float>>{
           {1, 1, 0.0f}, {7, 10, 0.0f}, {3, 37, 0.0f}, {5, 4, 1000.0f}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) + " offset " + std::to_string(offset));
    // Logits near 1000 would overflow exp() without the row maximum.
    const Tensor z = testing::random_tensor({rows, cols}, 10 + cols, offset - 4.0f, offset + 4.0f);
    const std::vector<double> p = softmax_ref(testing::to_double(z), rows, cols);
    std::vector<double> logp(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) logp[i] = std::log(p[i]);
    // One float32 rounding of values ≤ 1 (softmax); log-softmax from (z − m) exact, minus a double log-sum.
    EXPECT_TRUE(testing::all_close(F::softmax(Var(z)).value(), p, 1e-6, 1e-7));
    EXPECT_TRUE(testing::all_close(F::log_softmax(Var(z)).value(), logp, 1e-6, 1e-6));
  }
}

TEST(SoftmaxOps, GradientsMatchFiniteDifferences) {
  const Tensor z = testing::random_tensor({4, 6}, 21, -2.0f, 2.0f);
  for (bool log_form : {false, true}) {
    SCOPED_TRACE(log_form ? "log_softmax" : "softmax");
    EXPECT_TRUE(testing::gradcheck(
        [log_form](const std::vector<Var>& v) {
          return testing::weighted_sum(log_form ? F::log_softmax(v[0]) : F::softmax(v[0]), 22);
        },
        {Var(z, true)}));
  }
  // p in [0.2, 1): log p's curvature 1/p² ≤ 25 keeps the h = 1e-2 truncation near 4e-4 relative.
  const Tensor p = testing::random_tensor({5, 3}, 23, 0.2f, 1.0f);
  const Tensor log_q = testing::random_tensor({5, 3}, 24, -3.0f, -0.2f);
  EXPECT_TRUE(
      testing::gradcheck([](const std::vector<Var>& v) { return testing::weighted_sum(F::kl_div(v[0], v[1]), 25); },
                         {Var(p, true), Var(log_q, true)}));
  EXPECT_TRUE(testing::gradcheck([](const std::vector<Var>& v) { return testing::weighted_sum(F::entropy(v[0]), 26); },
                                 {Var(p, true)}));
  const Tensor x = testing::random_tensor({6, 5}, 27);
  for (std::int64_t g : {1, 2, 3, 6}) {
    SCOPED_TRACE("group " + std::to_string(g));
    EXPECT_TRUE(testing::gradcheck(
        [g](const std::vector<Var>& v) { return testing::weighted_sum(F::group_mean(v[0], g), 28); }, {Var(x, true)}));
    EXPECT_TRUE(testing::gradcheck(
        [g](const std::vector<Var>& v) { return testing::weighted_sum(F::repeat_rows(v[0], g), 29); },
        {Var(x.rows(0, 2), true)}));
  }
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Var>& v) { return testing::weighted_sum(F::scale(v[0], -2.5f), 30); }, {Var(x, true)}));
}

TEST(SoftmaxOps, DivergenceEntropyAndGroupsMatchTheDefinition) {
  const Tensor p = testing::random_tensor({4, 7}, 31, 0.0f, 1.0f);
  const Tensor log_q = testing::random_tensor({4, 7}, 32, -5.0f, 0.0f);
  const std::vector<double> pd = testing::to_double(p), qd = testing::to_double(log_q);
  std::vector<double> kl(4, 0.0), h(4, 0.0);
  for (std::size_t i = 0; i < pd.size(); ++i) {
    kl[i / 7] += pd[i] * (std::log(pd[i]) - qd[i]);
    h[i / 7] -= pd[i] * std::log(pd[i]);
  }
  // Seven-term sums of O(1) products in double, rounded once.
  EXPECT_TRUE(testing::all_close(F::kl_div(Var(p), Var(log_q)).value(), kl, 1e-6, 1e-6));
  EXPECT_TRUE(testing::all_close(F::entropy(Var(p)).value(), h, 1e-6, 1e-6));
  // A probability that underflowed to 0 adds 0, not NaN (log at 1e-20).
  const Tensor with_zero = Tensor::from_vector<float>({0.0f, 0.25f, 0.75f}, {1, 3});
  const Tensor lq = Tensor::from_vector<float>({-1.0f, -1.0f, -1.0f}, {1, 3});
  EXPECT_NEAR(F::entropy(Var(with_zero)).value().item(), -(0.25 * std::log(0.25) + 0.75 * std::log(0.75)), 1e-6);
  EXPECT_NEAR(F::kl_div(Var(with_zero), Var(lq)).value().item(),
              0.25 * (std::log(0.25) + 1) + 0.75 * (std::log(0.75) + 1), 1e-6);

  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 5, 7, 11}, {3, 2});
  EXPECT_EQ(F::group_mean(Var(x), 3).value().to_vector<float>(), (std::vector<float>{11.0f / 3, 6.0f}));
  EXPECT_EQ(F::repeat_rows(Var(x.rows(0, 2)), 2).value().to_vector<float>(),
            (std::vector<float>{1, 2, 1, 2, 3, 5, 3, 5}));
  EXPECT_THROW(F::group_mean(Var(x), 2), ShapeError);  // 3 rows are not whole groups of 2
  EXPECT_THROW(F::group_mean(Var(x), 0), InvalidArgument);
  EXPECT_THROW(F::kl_div(Var(p), Var(log_q.rows(0, 3))), ShapeError);
  EXPECT_THROW(F::softmax(Var(testing::random_tensor({4}, 1))), ShapeError);
  EXPECT_THROW(F::scale(Var(x), NAN), InvalidArgument);
}

TEST(ConsistencyRegularizer, MatchesTheDefinitionAndFiniteDifferences) {
  for (std::int64_t k : {2, 4}) {
    SCOPED_TRACE("K = " + std::to_string(k));
    const Tensor z = testing::random_tensor({3 * k, 5}, 40 + k, -2.0f, 2.0f);
    const Var r = F::consistency_regularizer(Var(z), k, 2.0f, 0.5f);
    ASSERT_EQ(r.shape(), Shape{3});
    // Sums of ≤ 20 float32 terms of size ≤ log 5 against double.
    EXPECT_TRUE(testing::all_close(r.value(), consistency_ref(testing::to_double(z), k, 5, 2.0, 0.5), 1e-5, 1e-5));
    EXPECT_TRUE(testing::gradcheck(
        [k](const std::vector<Var>& v) {
          return testing::weighted_sum(F::consistency_regularizer(v[0], k, 2.0f, 0.5f), 41);
        },
        {Var(z, true)}));
    // The KL term alone, and the entropy term alone.
    EXPECT_TRUE(testing::all_close(F::consistency_regularizer(Var(z), k, 1.0f, 0.0f).value(),
                                   consistency_ref(testing::to_double(z), k, 5, 1.0, 0.0), 1e-5, 1e-5));
    EXPECT_TRUE(testing::all_close(F::consistency_regularizer(Var(z), k, 0.0f, 1.0f).value(),
                                   consistency_ref(testing::to_double(z), k, 5, 0.0, 1.0), 1e-5, 1e-5));
  }
}

TEST(ConsistencyRegularizer, GradientStaysInsideEachExamplesCopies) {
  const std::int64_t k = 3, examples = 4, classes = 6;
  const Tensor z = testing::random_tensor({examples * k, classes}, 50, -3.0f, 3.0f);
  for (std::int64_t b = 0; b < examples; ++b) {
    const Var logits(z, true);
    const Var r = F::consistency_regularizer(logits, k, 5.0f, 0.5f);
    std::vector<float> seed(examples, 0.0f);
    seed[b] = 1.0f;
    autograd::backward(r, Tensor::from_vector(seed, {examples}));
    const std::vector<float> g = logits.grad().to_vector<float>();
    double inside = 0.0;
    for (std::int64_t row = 0; row < examples * k; ++row)
      for (std::int64_t j = 0; j < classes; ++j) {
        const float v = g[row * classes + j];
        if (row / k == b)
          inside += std::fabs(v);
        else
          EXPECT_EQ(v, 0.0f) << "example " << b << " reached row " << row;
      }
    EXPECT_GT(inside, 1e-4) << "example " << b;
  }
}

TEST(ConsistencyRegularizer, IdenticalCopiesHaveNoKlAndBadWeightsAreRefused) {
  Tensor z = testing::random_tensor({2 * 4, 3}, 60);
  for (std::int64_t r = 0; r < 8; ++r) z.rows(r, r + 1).copy_from(z.rows(r - r % 4, r - r % 4 + 1));
  const std::vector<float> kl_only = F::consistency_regularizer(Var(z), 4, 10.0f, 0.0f).value().to_vector<float>();
  for (float v : kl_only) EXPECT_NEAR(v, 0.0f, 1e-6f);
  EXPECT_EQ(F::consistency_regularizer(Var(z), 4, 0.0f, 0.0f).value().to_vector<float>(), std::vector<float>(2, 0.0f));
  EXPECT_THROW(F::consistency_regularizer(Var(z), 4, -1.0f, 0.5f), InvalidArgument);
  EXPECT_THROW(F::consistency_regularizer(Var(z), 4, INFINITY, 0.5f), InvalidArgument);
  EXPECT_THROW(F::consistency_regularizer(Var(z), 4, 1.0f, NAN), InvalidArgument);
  EXPECT_THROW(F::consistency_regularizer(Var(z), 3, 1.0f, 0.5f), ShapeError);
}

TEST(SoftmaxOpsCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  for (auto [rows, cols] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {8, 10}, {33, 37}, {257, 3}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols));
    const Tensor z = testing::random_tensor({rows, cols}, 70 + rows, -4.0f, 4.0f);
    const Tensor gy = testing::random_tensor({rows, cols}, 71 + rows);
    const Tensor q = testing::random_tensor({rows, cols}, 72 + rows, 0.01f, 1.0f);
    const Tensor lq = testing::random_tensor({rows, cols}, 73 + rows, -5.0f, 0.0f);
    const Tensor gr = testing::random_tensor({rows}, 74 + rows);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      // Warp sums in float vs row sums in double over ≤ 37 terms: a few ulps of O(1) values.
      const Var x(run.input(z), true);
      const Var p = F::softmax(x);
      run.check("softmax", p.value(), {1e-5, 1e-6});
      autograd::backward(p, run.input(gy));
      run.check("softmax dx", x.grad(), {1e-4, 1e-5});
      const Var x2(run.input(z), true);
      const Var lp = F::log_softmax(x2);
      run.check("log_softmax", lp.value(), {1e-5, 1e-5});
      autograd::backward(lp, run.input(gy));
      run.check("log_softmax dx", x2.grad(), {1e-4, 1e-5});
      const Var pv(run.input(q), true), lqv(run.input(lq), true);
      const Var kl = F::kl_div(pv, lqv);
      run.check("kl", kl.value(), {1e-5, 1e-5});
      autograd::backward(kl, run.input(gr));
      run.check("kl dp", pv.grad(), {1e-5, 1e-5});
      run.check("kl dlogq", lqv.grad(), {1e-6, 1e-7});
      const Var pe(run.input(q), true);
      const Var h = F::entropy(pe);
      run.check("entropy", h.value(), {1e-5, 1e-5});
      autograd::backward(h, run.input(gr));
      run.check("entropy dp", pe.grad(), {1e-5, 1e-5});
    }));
  }
  const std::int64_t k = 4;
  const Tensor z = testing::random_tensor({99 * k, 10}, 80, -3.0f, 3.0f);
  const Tensor seed = testing::random_tensor({99}, 81);
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    const Var x(run.input(z), true);
    const Var m = F::group_mean(x, k);
    run.check("group_mean", m.value(), {1e-6, 1e-6});  // 4-term sums, float vs double
    const Var r = F::consistency_regularizer(x, k, 2.0f, 0.5f);
    run.check("regularizer", r.value(), {1e-4, 1e-5});
    autograd::backward(r, run.input(seed));
    run.check("regularizer dz", x.grad(), {1e-3, 1e-5});  // through five ops, float sums
    const Var rep = F::repeat_rows(Var(run.input(z.rows(0, 7)), false), 3);
    run.check("repeat_rows", rep.value(), testing::kExact);
  }));
}

}  // namespace
}  // namespace aegis
