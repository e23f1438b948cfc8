// PixelDP (certify/pixeldp.h): noise statistics, calibration against hand-computed values,
// operator norms against explicit dense matrices, the sensitivity projection during training,
// Hoeffding / empirical-Bernstein bounds (hand values and coverage), the robustness condition
// and size, bad parameters, model files, batching independence, the expected-scores gradient,
// and `aegis pixeldp train | certify` on the bundled digits set.
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "certify/pixeldp.h"
#include "kernels/random.h"
#include "nn/layers.h"
#include "nn/model_file.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::NoiseKind;
using certify::NoiseLayer;
using certify::PixelDpNorm;
using nn::Var;

constexpr double kPi = 3.14159265358979323846;

// ---- noise --------------------------------------------------------------------------------------

struct Moments {
  double mean = 0, variance = 0, mean_abs = 0;
};
Moments moments(const std::vector<float>& v) {
  Moments m;
  for (float x : v) m.mean += x, m.mean_abs += std::fabs(x);
  m.mean /= static_cast<double>(v.size());
  m.mean_abs /= static_cast<double>(v.size());
  for (float x : v) m.variance += (x - m.mean) * (x - m.mean);
  m.variance /= static_cast<double>(v.size() - 1);
  return m;
}

// n = 2·10⁵ draws; each tolerance is 5 standard errors of the statistic under the distribution.
TEST(PixelDpNoise, GaussianMoments) {
  const double sigma = 0.7;
  const std::int64_t n = 200000;
  NoiseLayer layer(NoiseKind::Gaussian, sigma, 11);
  const std::vector<float> y = layer.forward(Var(Tensor::zeros({50, n / 50}), false)).value().to_vector<float>();
  const Moments m = moments(y);
  EXPECT_NEAR(m.mean, 0.0, 5 * sigma / std::sqrt(n));
  // Var(s²) = 2σ⁴/n for a Gaussian.
  EXPECT_NEAR(m.variance, sigma * sigma, 5 * std::sqrt(2.0 / n) * sigma * sigma);
  // E|X| = σ·sqrt(2/π); Var|X| = σ²(1 − 2/π).
  EXPECT_NEAR(m.mean_abs, sigma * std::sqrt(2.0 / kPi), 5 * sigma * std::sqrt((1 - 2 / kPi) / n));
}

TEST(PixelDpNoise, LaplaceMoments) {
  const double b = 0.4;
  const std::int64_t n = 200000;
  NoiseLayer layer(NoiseKind::Laplace, b, 12);
  const std::vector<float> y = layer.forward(Var(Tensor::zeros({n}), false)).value().to_vector<float>();
  const Moments m = moments(y);
  EXPECT_NEAR(m.mean, 0.0, 5 * std::sqrt(2.0 / n) * b);
  // Variance 2b²; Var(s²) ≈ (μ₄ − σ⁴)/n = (24 − 4)b⁴/n.
  EXPECT_NEAR(m.variance, 2 * b * b, 5 * std::sqrt(20.0 / n) * b * b);
  // E|X| = b (a Gaussian of the same variance would give 1.128·b); Var|X| = b².
  EXPECT_NEAR(m.mean_abs, b, 5 * b / std::sqrt(n));
  // The tail P[|X| > 3b] = e⁻³ (binomial standard error over n draws).
  double tail = 0;
  for (float v : y) tail += std::fabs(v) > 3 * b;
  EXPECT_NEAR(tail / n, std::exp(-3.0), 5 * std::sqrt(std::exp(-3.0) / n));
}

TEST(PixelDpNoise, KeyedDrawsAndGradient) {
  NoiseLayer a(NoiseKind::Gaussian, 1.0, 5), b(NoiseKind::Gaussian, 1.0, 5);
  const Tensor x = testing::random_tensor({3, 7}, 1);
  const auto a0 = a.forward(Var(x, false)).value().to_vector<float>();
  const auto a1 = a.forward(Var(x, false)).value().to_vector<float>();
  EXPECT_EQ(a0, b.forward(Var(x, false)).value().to_vector<float>());  // same seed, same counter
  EXPECT_NE(a0, a1);                                                   // the counter moves on
  EXPECT_EQ(a.draws(), 2u);
  // A fixed draw keys row r as (first_row + r): rows 2.. of one call equal rows 0.. of another.
  a.set_next_draw(NoiseLayer::kFixedStepBase, 0);
  const auto f0 = a.forward(Var(Tensor::zeros({3, 7}), false)).value().to_vector<float>();
  a.set_next_draw(NoiseLayer::kFixedStepBase, 2);
  const auto f2 = a.forward(Var(Tensor::zeros({1, 7}), false)).value().to_vector<float>();
  EXPECT_EQ(std::vector<float>(f0.begin() + 14, f0.end()), f2);
  EXPECT_EQ(a.draws(), 2u);  // fixed draws leave the counter alone
  // The noise is a constant of the pass: ∂y/∂x = I.
  Var v(x, true);
  autograd::backward(a.forward(v), Tensor::full({3, 7}, 1.0));
  for (float g : v.grad().to_vector<float>()) EXPECT_EQ(g, 1.0f);
  testing::expect_error<InvalidArgument>([&] { a.set_next_draw(5, 0); }, "step", "fixed noise draw");
}

TEST(PixelDpNoise, LaplaceCudaMatchesCpu) {
  AEGIS_REQUIRE_GPU();
  const philox::Key key{3, philox::kPurposePixelDp, 4};
  for (const std::int64_t n : testing::kOddSizes) {  // odd sizes: the last pair is half used
    SCOPED_TRACE(n);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      // Both round the same double-precision transform to float; libm and CUDA's log differ by an
      // ulp of double at most, so the floats agree to a float ulp.
      Tensor out = run.output("laplace noise", {n}, {2e-7, 1e-12});
      AEGIS_DISPATCH(run.device(), fill_laplace(out.data<float>(), n, key, 17, 0.5f));
    }));
  }
}

// ---- calibration ----------------------------------------------------------------------------------

TEST(PixelDpCalibration, HandValues) {
  // sqrt(2 ln(1.25/0.05))·1·0.1/1 and sqrt(2 ln(1.25/10⁻⁵))·2·0.3/0.5 (computed in double).
  EXPECT_NEAR(certify::gaussian_sigma(1.0, 0.05, 1.0, 0.1), 0.253727248235904, 1e-14);
  EXPECT_NEAR(certify::gaussian_sigma(0.5, 1e-5, 2.0, 0.3), 5.81376631512647, 1e-12);
  EXPECT_DOUBLE_EQ(certify::laplace_scale(0.5, 2.0, 0.3), 1.2);
  certify::PixelDpMechanism g{PixelDpNorm::L2, 0.253727248235904, 0.05, 1.0};
  EXPECT_NEAR(g.epsilon_at(0.1), 1.0, 1e-12);
  EXPECT_NEAR(g.size_at(0.5), 0.05, 1e-12);
  EXPECT_EQ(g.max_epsilon(), 1.0);
  certify::PixelDpMechanism l{PixelDpNorm::L1, 1.2, 0.0, 2.0};
  EXPECT_NEAR(l.epsilon_at(0.3), 0.5, 1e-12);
  EXPECT_EQ(l.effective_delta(), 0.0);
  EXPECT_TRUE(std::isinf(l.max_epsilon()));
}

TEST(PixelDpCalibration, BadParameters) {
  using certify::PixelDpParams;
  auto bad = [](PixelDpParams p, const std::string& fragment) {
    testing::expect_error<InvalidArgument>([&] { certify::check_pixeldp_params(p); }, "PixelDP", fragment);
  };
  PixelDpParams p;
  p.eps = 0.0;
  bad(p, "epsilon 0");
  p.eps = -1.0;
  bad(p, "epsilon -1");
  p.eps = 1.5;  // the Gaussian mechanism needs ε ≤ 1
  bad(p, "at most 1");
  p = PixelDpParams{};
  p.delta = 0.0;
  bad(p, "delta 0");
  p.delta = 1.0;
  bad(p, "delta 1");
  p.delta = std::nan("");
  bad(p, "delta nan");
  p = PixelDpParams{};
  p.L = 0.0;
  bad(p, "bound L 0");
  p.L = -0.3;
  bad(p, "bound L -0.3");
  p = PixelDpParams{};
  p.norm = PixelDpNorm::L1;
  p.eps = 3.0;    // fine for Laplace
  p.delta = 7.0;  // ignored for Laplace
  EXPECT_NO_THROW(certify::check_pixeldp_params(p));
  const nn::ModelSpec spec{"mlp", {1, 8, 8}, 10, "", 0};
  for (int position : {-1, 3})
    testing::expect_error<InvalidArgument>([&] { certify::build_pixeldp(spec, position, PixelDpParams{}, 0); },
                                           "position " + std::to_string(position), "must be 0");
  testing::expect_error<InvalidArgument>([&] { certify::parse_pixeldp_norm("linf"); }, "linf", "l1 or l2");
  testing::expect_error<InvalidArgument>([&] { certify::hoeffding_half_width(10, 10, 1.0); }, "confidence 1", "(0, 1)");
  testing::expect_error<InvalidArgument>([&] { certify::bernstein_half_width(1, 10, 0.9, 0.1); }, "2 draws", "got 1");
}

// ---- operator norms --------------------------------------------------------------------------------

// Largest eigenvalue of a symmetric n×n matrix (row-major, double) by cyclic Jacobi rotations.
double largest_eigenvalue(std::vector<double> a, std::size_t n) {
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (std::size_t p = 0; p < n; ++p)
      for (std::size_t q = p + 1; q < n; ++q) off += a[p * n + q] * a[p * n + q];
    if (off < 1e-26) break;
    for (std::size_t p = 0; p < n; ++p)
      for (std::size_t q = p + 1; q < n; ++q) {
        if (std::fabs(a[p * n + q]) < 1e-300) continue;
        const double theta = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q]);
        const double t = (theta >= 0 ? 1 : -1) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (std::size_t k = 0; k < n; ++k) {  // A ← A·J
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (std::size_t k = 0; k < n; ++k) {  // A ← Jᵀ·A
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
      }
  }
  double top = a[0];
  for (std::size_t i = 1; i < n; ++i) top = std::max(top, a[i * n + i]);
  return top;
}

// The dense matrix [rows = outputs, cols = inputs] of a bias-free linear map, column by column.
std::vector<double> dense(const certify::LinearMap& map, const Shape& input, std::size_t& rows) {
  const std::int64_t cols = shape_numel(input);
  std::vector<double> m;
  Shape shape{1};
  shape.insert(shape.end(), input.begin(), input.end());
  for (std::int64_t j = 0; j < cols; ++j) {
    Tensor e = Tensor::zeros(shape);
    e.data<float>()[j] = 1.0f;
    const std::vector<float> col = map(Var(e, false)).value().to_vector<float>();
    if (m.empty()) m.resize(col.size() * static_cast<std::size_t>(cols));
    rows = col.size();
    for (std::size_t i = 0; i < col.size(); ++i)
      m[i * static_cast<std::size_t>(cols) + static_cast<std::size_t>(j)] = col[i];
  }
  return m;
}

double dense_spectral(const std::vector<double>& m, std::size_t rows, std::size_t cols) {
  std::vector<double> gram(cols * cols, 0.0);
  for (std::size_t i = 0; i < cols; ++i)
    for (std::size_t j = 0; j < cols; ++j)
      for (std::size_t r = 0; r < rows; ++r) gram[i * cols + j] += m[r * cols + i] * m[r * cols + j];
  return std::sqrt(largest_eigenvalue(gram, cols));
}

double dense_max_column_l1(const std::vector<double>& m, std::size_t rows, std::size_t cols) {
  double best = 0;
  for (std::size_t j = 0; j < cols; ++j) {
    double s = 0;
    for (std::size_t r = 0; r < rows; ++r) s += std::fabs(m[r * cols + j]);
    best = std::max(best, s);
  }
  return best;
}

TEST(PixelDpOperatorNorm, ConvMatchesDenseMatrix) {
  // Odd sizes, stride 2 and padding: the map on the whole image, borders included.
  const Tensor w = testing::random_tensor({3, 2, 3, 3}, 21);
  for (const nn::Conv2dOptions opt : {nn::Conv2dOptions{1, 1}, nn::Conv2dOptions{2, 1}, nn::Conv2dOptions{2, 0}}) {
    const Shape input{2, 7, 5};
    std::size_t rows = 0;
    const auto m = dense([&](const Var& v) { return nn::F::conv2d(v, Var(w, false), Var(), opt); }, input, rows);
    const std::size_t cols = static_cast<std::size_t>(shape_numel(input));
    // Power iteration stops at a relative change of 1e-9; float convs carry ~1e-6 relative error.
    EXPECT_NEAR(certify::conv2d_spectral_norm(w, opt, input), dense_spectral(m, rows, cols),
                1e-4 * dense_spectral(m, rows, cols))
        << "stride " << opt.stride << " padding " << opt.padding;
    // The L1 norm bound is the largest column of the dense matrix (interior pixels reach it).
    EXPECT_NEAR(certify::conv2d_l1_norm(w, opt), dense_max_column_l1(m, rows, cols), 1e-5)
        << "stride " << opt.stride << " padding " << opt.padding;
  }
  const Tensor lw = testing::random_tensor({5, 9}, 22);
  std::size_t rows = 0;
  const auto m = dense([&](const Var& v) { return nn::F::linear(v, Var(lw, false), Var()); }, {9}, rows);
  EXPECT_NEAR(certify::linear_spectral_norm(lw), dense_spectral(m, rows, 9), 1e-4 * dense_spectral(m, rows, 9));
  EXPECT_NEAR(certify::linear_l1_norm(lw), dense_max_column_l1(m, rows, 9), 1e-5);
}

TEST(PixelDpOperatorNorm, PoolingConstants) {
  using certify::pooling_lipschitz;
  // Non-overlapping max pooling is 1-Lipschitz; 2×2 windows at stride 1 cover a pixel 4 times.
  EXPECT_EQ(pooling_lipschitz({2, 2, 0}, false, PixelDpNorm::L2), 1.0);
  EXPECT_EQ(pooling_lipschitz({2, 1, 0}, false, PixelDpNorm::L2), 2.0);
  EXPECT_EQ(pooling_lipschitz({2, 1, 0}, false, PixelDpNorm::L1), 4.0);
  EXPECT_EQ(pooling_lipschitz({2, 1, 0}, true, PixelDpNorm::L2), 1.0);
  EXPECT_EQ(pooling_lipschitz({3, 2, 1}, true, PixelDpNorm::L1), 4.0 / 9.0);
  // The zoo's networks: cnn-fmnist pools 2×2 at stride 1 between its convolutions.
  certify::PixelDpParams params;
  EXPECT_EQ(certify::build_pixeldp({"cnn-fmnist", {1, 28, 28}, 10, "relu", 0}, 2, params, 0)->sensitivity_bound(), 2.0);
  EXPECT_EQ(certify::build_pixeldp({"lenet-2conv", {1, 28, 28}, 10, "", 0}, 2, params, 0)->sensitivity_bound(), 1.0);
  EXPECT_EQ(certify::build_pixeldp({"cnn-fmnist", {1, 28, 28}, 10, "tanh", 0}, 0, params, 0)->sensitivity_bound(), 1.0);
  // A max-pool worst case: one pixel in 4 overlapping windows moves 4 outputs by the same amount.
  Tensor a = Tensor::zeros({1, 1, 3, 3}), b = Tensor::zeros({1, 1, 3, 3});
  b.data<float>()[4] = 1.0f;
  const auto pa = nn::F::max_pool2d(Var(a, false), {2, 1, 0}).value().to_vector<float>();
  const auto pb = nn::F::max_pool2d(Var(b, false), {2, 1, 0}).value().to_vector<float>();
  double sq = 0;
  for (std::size_t i = 0; i < pa.size(); ++i) sq += (pa[i] - pb[i]) * (pa[i] - pb[i]);
  EXPECT_DOUBLE_EQ(std::sqrt(sq), 2.0);
}

}  // namespace
}  // namespace aegis
