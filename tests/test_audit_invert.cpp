// Model inversion (privacy/audit_invert.h): on a linear softmax model z = W·x + b the gradient of
// the MI-Face cost is closed-form, ∇(1 − p_y) = −p_y·(w_y − Σ_j p_j·w_j), so the first step is
// checked exactly; the statistics are checked against hand-computed values; the CLI end to end
// on the bundled digits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "privacy/audit_invert.h"
#include "support/linear_problem.h"
#include "support/testing.h"

namespace aegis::privacy {
namespace {

const std::vector<std::int64_t> kShape = {1, 4, 6};  // linear_problem's examples

InversionOptions few_steps(std::int64_t steps, double lr) {
  InversionOptions o;
  o.steps = steps;
  o.lr = lr;
  o.patience = steps + 1;
  o.keep_costs = true;
  return o;
}

TEST(AuditInvert, FirstStepFollowsTheSoftmaxGradientOfALinearModel) {
  const testing::LinearProblem p = testing::linear_problem(3, 1);
  InversionOptions o = few_steps(1, 0.05);
  o.start = InversionStart::Grey;  // interior: the projection does not bind after one small step
  const std::vector<InvertedClass> out = invert_classes(*p.model, kShape, 3, Device::cpu(), o);
  ASSERT_EQ(out.size(), 3u);
  for (const InvertedClass& c : out) {
    std::vector<double> z(3), prob(3);
    double total = 0.0;
    for (std::int64_t k = 0; k < 3; ++k) {
      z[k] = p.b[k];
      for (std::int64_t j = 0; j < p.d; ++j) z[k] += 0.5 * p.w[k * p.d + j];
    }
    for (std::int64_t k = 0; k < 3; ++k) total += prob[k] = std::exp(z[k]);
    for (double& v : prob) v /= total;
    const std::int64_t y = c.label;
    ASSERT_EQ(c.steps, 1);
    ASSERT_EQ(c.costs.size(), 2u);
    EXPECT_NEAR(c.costs[0], 1.0 - prob[y], 1e-6);
    EXPECT_LT(c.costs[1], c.costs[0]);  // so the image is the stepped one
    for (std::int64_t j = 0; j < p.d; ++j) {
      double mean_w = 0.0;
      for (std::int64_t k = 0; k < 3; ++k) mean_w += prob[k] * p.w[k * p.d + j];
      const double expected = 0.5 + 0.05 * prob[y] * (p.w[y * p.d + j] - mean_w);
      // float32 logits and pixels: about 1e-7 relative, well inside 1e-5.
      EXPECT_NEAR(c.image[j], expected, 1e-5) << "class " << y << " pixel " << j;
    }
  }
}

TEST(AuditInvert, CostNeverRisesWithASmallStepAndPixelsStayInTheBox) {
  const testing::LinearProblem p = testing::linear_problem(4, 1);
  const std::vector<InvertedClass> out = invert_classes(*p.model, kShape, 4, Device::cpu(), few_steps(200, 0.05));
  for (const InvertedClass& c : out) {
    ASSERT_EQ(c.costs.size(), 201u);
    // Projected gradient descent with a step below 1/L (L ≤ ‖W‖² for the softmax) never raises a
    // smooth cost; 1e-6 absorbs float32 rounding of p_y.
    for (std::size_t i = 1; i < c.costs.size(); ++i) EXPECT_LE(c.costs[i], c.costs[i - 1] + 1e-6) << i;
    EXPECT_LT(c.costs.back(), c.costs.front() - 0.05);
    EXPECT_EQ(c.stopped, "steps");
  }
  // A huge step drives pixels to the bounds; none leaves [0, 1].
  InversionOptions big = few_steps(20, 1e3);
  for (const InvertedClass& c : invert_classes(*p.model, kShape, 4, Device::cpu(), big)) {
    std::int64_t at_bound = 0;
    for (float v : c.image) {
      EXPECT_GE(v, 0.0f);
      EXPECT_LE(v, 1.0f);
      at_bound += v == 0.0f || v == 1.0f;
    }
    EXPECT_GT(at_bound, 0);
    EXPECT_GT(c.confidence, 0.9);
  }
}

TEST(AuditInvert, TotalVariationPriorSmoothsTheImage) {
  const testing::LinearProblem p = testing::linear_problem(3, 1);
  InversionOptions o = few_steps(100, 0.05);
  o.start = InversionStart::Random;
  o.seed = 5;
  const std::vector<InvertedClass> plain = invert_classes(*p.model, kShape, 3, Device::cpu(), o);
  o.tv = 2.0;
  const std::vector<InvertedClass> smooth = invert_classes(*p.model, kShape, 3, Device::cpu(), o);
  for (std::size_t k = 0; k < plain.size(); ++k) {
    EXPECT_LT(smooth[k].tv, 0.8 * plain[k].tv) << "class " << k;
    EXPECT_NEAR(smooth[k].tv, total_variation(smooth[k].image, 1, 4, 6), 1e-9);
  }
}

TEST(AuditInvert, TotalVariationValueAndGradient) {
  // One row [0, 1]: the first pixel sees dh = 1, the last none: TV = (sqrt(1 + ε²) − ε)/2.
  EXPECT_NEAR(total_variation({0.0f, 1.0f}, 1, 1, 2), 0.5 * (std::sqrt(1.0 + 1e-6) - 1e-3), 1e-12);
  EXPECT_EQ(total_variation(std::vector<float>(12, 0.3f), 3, 2, 2), 0.0);
  // The gradient against central differences on a random 2×3×5 image (double sums of float
  // pixels; h = 1e-3 on a function with curvature ~1/r: agreement to 1e-3 relative).
  std::vector<float> x = testing::random_tensor({30}, 17, 0.0f, 1.0f).to_vector<float>();
  std::vector<float> grad(30, 0.0f);
  total_variation(x, 2, 3, 5, &grad, 2.0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::vector<float> up = x, down = x;
    up[i] += 1e-3f;
    down[i] -= 1e-3f;
    const double numeric = 2.0 * (total_variation(up, 2, 3, 5) - total_variation(down, 2, 3, 5)) / (up[i] - down[i]);
    EXPECT_NEAR(grad[i], numeric, 1e-3 * std::max(1.0, std::fabs(numeric))) << i;
  }
}

TEST(AuditInvert, CorrelationAndMseAgainstHandComputedValues) {
  // a = (1, 2, 3), b = (2, 4, 7): deviations (−1, 0, 1) and (−7/3, −1/3, 8/3), Σab = 5, Σa² = 2,
  // Σb² = 114/9, so r = 5/sqrt(2·114/9) = 15/sqrt(228); MSE = (1 + 4 + 16)/3 = 7.
  EXPECT_NEAR(pearson_correlation({1, 2, 3}, {2, 4, 7}), 15.0 / std::sqrt(228.0), 1e-12);
  EXPECT_NEAR(mean_squared_error({1, 2, 3}, {2, 4, 7}), 7.0, 1e-12);
  EXPECT_NEAR(pearson_correlation({1, 2, 3}, {3, 5, 7}), 1.0, 1e-12);
  EXPECT_NEAR(pearson_correlation({1, 2, 3}, {-1, -2, -3}), -1.0, 1e-12);
  EXPECT_EQ(pearson_correlation({1, 1, 1}, {1, 2, 3}), 0.0);  // constant: defined as 0
  EXPECT_THROW(pearson_correlation({1, 2}, {1, 2, 3}), InvalidArgument);
  EXPECT_THROW(mean_squared_error({}, {}), InvalidArgument);
}

TEST(AuditInvert, ClassMeansOfASmallDataset) {
  nn::Dataset d;
  d.name = "tiny";
  d.images = Tensor::from_vector(std::vector<float>{0.0f, 1.0f, 0.2f, 0.4f, 0.6f, 0.8f}, {3, 1, 1, 2});
  d.labels = Tensor::from_vector(std::vector<std::int32_t>{1, 0, 1}, {3});
  d.num_classes = 3;
  const auto means = class_means(d, 3);
  ASSERT_EQ(means.size(), 3u);
  EXPECT_FLOAT_EQ(means[0][0], 0.2f);
  EXPECT_FLOAT_EQ(means[0][1], 0.4f);
  EXPECT_FLOAT_EQ(means[1][0], 0.3f);
  EXPECT_FLOAT_EQ(means[1][1], 0.9f);
  EXPECT_EQ(means[2], (std::vector<float>{0.0f, 0.0f}));  // no examples
}

TEST(AuditInvert, ReproducibleFromTheSeedAndStoppingRules) {
  const testing::LinearProblem p = testing::linear_problem(3, 1);
  InversionOptions o = few_steps(30, 0.1);
  o.start = InversionStart::Random;
  o.seed = 9;
  const auto a = invert_classes(*p.model, kShape, 3, Device::cpu(), o);
  const auto b = invert_classes(*p.model, kShape, 3, Device::cpu(), o);
  o.seed = 10;
  const auto c = invert_classes(*p.model, kShape, 3, Device::cpu(), o);
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].image, b[k].image);
    EXPECT_NE(a[k].image, c[k].image);
  }
  // γ: a cost threshold of 0.99 stops at once for any class that starts below it.
  o.min_cost = 0.99;
  for (const InvertedClass& r : invert_classes(*p.model, kShape, 3, Device::cpu(), o)) {
    EXPECT_EQ(r.stopped, "min-cost");
    EXPECT_EQ(r.steps, 0);
  }
  // β: with a step so large that it overshoots into the far corner, the cost stops improving.
  InversionOptions wild = few_steps(1000, 1e4);
  wild.patience = 3;
  for (const InvertedClass& r : invert_classes(*p.model, kShape, 3, Device::cpu(), wild)) {
    EXPECT_TRUE(r.stopped == "patience" || r.stopped == "min-cost") << r.stopped;
    EXPECT_LT(r.steps, 1000);
  }
}

TEST(AuditInvert, RejectsBadOptions) {
  const testing::LinearProblem p = testing::linear_problem(3, 1);
  const auto fails = [&](InversionOptions o, std::vector<std::int64_t> shape = kShape) {
    EXPECT_THROW(invert_classes(*p.model, shape, 3, Device::cpu(), o), InvalidArgument);
  };
  InversionOptions o;
  o.classes = {3};
  fails(o);
  o.classes = {1, 1};
  fails(o);
  o = {};
  o.lr = 0.0;
  fails(o);
  o = {};
  o.tv = -1.0;
  fails(o);
  o = {};
  o.min_cost = 1.0;
  fails(o);
  o = {};
  o.steps = 0;
  fails(o);
  fails({}, {24});  // not an image
  EXPECT_THROW(parse_inversion_start("noise"), InvalidArgument);
}

TEST(AuditInvert, CliWritesTheGridAndJson) {
  const std::string dir = testing::make_temp_dir("aegis_audit_invert");
  const testing::CliRun train = testing::run_cli(
      "train --data digits --model mlp --epochs 3 --device cpu --quiet --out " + dir + "/m.safetensors");
  ASSERT_EQ(train.status, 0) << train.err;
  const bool gnuplot = std::system("command -v gnuplot >/dev/null 2>&1") == 0;
  const std::string args = "audit invert --data digits --model " + dir +
                           "/m.safetensors --steps 200 --lr 0.1 --tv 0.05 --classes 0,3,7 --device cpu --quiet --json";
  const testing::CliRun r = testing::run_cli(args + (gnuplot ? " --plot " + dir + "/grid.png" : ""));
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["command"], "audit invert");
  ASSERT_EQ(j["classes"].size(), 3u);
  EXPECT_EQ(j["classes"][1]["class"], 3);
  for (const auto& c : j["classes"]) {
    EXPECT_GE(c["pearson"].get<double>(), -1.0);
    EXPECT_LE(c["pearson"].get<double>(), 1.0);
    EXPECT_GT(c["confidence"].get<double>(), 0.5);  // the descent reached the class
  }
  const testing::CliRun again = testing::run_cli(args);
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(nlohmann::json::parse(again.out)["classes"], j["classes"]);  // reproducible
  for (const char* bad : {" --classes 12", " --start noise", " --lr 0"}) {
    const testing::CliRun e =
        testing::run_cli("audit invert --data digits --quiet --model " + dir + "/m.safetensors" + bad);
    EXPECT_EQ(e.status, 1) << bad;
    EXPECT_EQ(e.err.rfind("aegis: error: ", 0), 0u) << e.err;
  }
  if (!gnuplot) GTEST_SKIP() << "gnuplot (gnuplot-nox) is not installed: the grid was not drawn";
  std::ifstream png(dir + "/grid.png", std::ios::binary);
  std::string head(8, '\0');
  png.read(&head[0], 8);
  EXPECT_EQ(head, "\x89PNG\r\n\x1a\n");
  EXPECT_GT(std::filesystem::file_size(dir + "/grid.png"), 1000u);
}

TEST(AuditInvert, CliInvertsAnOnnxModel) {
  // An imported graph (tests/onnx/fixtures/digits_cnn: a small CNN over the 1×8×8 digits) goes
  // through the same input-gradient path as a zoo model.
  const std::string model = testing::source_dir() + "/tests/onnx/fixtures/digits_cnn/model.onnx";
  const testing::CliRun r = testing::run_cli("audit invert --data digits --model " + model +
                                             " --steps 20 --classes 2,5 --device cpu --quiet --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["input_shape"], nlohmann::json::array({1, 8, 8}));
  ASSERT_EQ(j["classes"].size(), 2u);
  for (const auto& c : j["classes"]) {
    EXPECT_EQ(c["steps"], 20);  // patience 100 > 20 steps and γ = 0: only the step limit stops it
    EXPECT_EQ(c["stopped"], "steps");
    EXPECT_GT(c["confidence"].get<double>(), 0.0);
    EXPECT_LE(c["cost"].get<double>(), 1.0);
  }
}

}  // namespace
}  // namespace aegis::privacy
