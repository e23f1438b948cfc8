// The scattering transform (kernels/scattering.h, F::scattering2d): Kymatio's Scattering2D
// outputs reproduced (tests/reference/scattering_kymatio.h, made with kymatio from PyPI), the
// backward pass the adjoint of the forward one (finite differences), bad sizes refused; the zoo's
// scatter-linear; and training on a fixed front end computed once (nn/fixed_features.h) giving
// the same model as computing it at every step.
#include <cmath>
#include <vector>

#include "nn/fixed_features.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/zoo.h"
#include "privacy/dp_train.h"
#include "reference/scattering_kymatio.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
namespace F = nn::F;

Tensor pattern(std::int64_t c, std::int64_t h, std::int64_t w) {
  std::vector<float> v;
  for (std::int64_t k = 0; k < c; ++k)
    for (std::int64_t i = 0; i < h; ++i)
      for (std::int64_t j = 0; j < w; ++j) v.push_back(static_cast<float>((7 * i + 13 * j + 5 * k) % 17) / 16.0f);
  return Tensor::from_vector(v, {1, c, h, w});
}

void expect_kymatio(const float* expected, std::size_t count, std::int64_t c, std::int64_t h, std::int64_t w, int J,
                    int L, const Shape& shape) {
  const Var y = F::scattering2d(Var(pattern(c, h, w)), J, L);
  ASSERT_EQ(y.shape(), shape);
  const std::vector<float> got = y.value().to_vector<float>();
  ASSERT_EQ(got.size(), count);
  float scale = 0.0f, worst = 0.0f;
  for (std::size_t i = 0; i < count; ++i) scale = std::max(scale, std::fabs(expected[i]));
  for (std::size_t i = 0; i < count; ++i) worst = std::max(worst, std::fabs(got[i] - expected[i]));
  // Float32 DFTs on both sides (measured: at most 3e-7 apart on outputs up to 0.53).
  EXPECT_LT(worst, 2e-6f * scale) << "largest difference " << worst << " of " << scale;
}

TEST(Scattering, ReproducesKymatio) {
  expect_kymatio(test::kymatio::fmnist, std::size(test::kymatio::fmnist), 1, 28, 28, 2, 8, {1, 81, 7, 7});
  // Non-square, two channels, three scales: second-order filters on a subsampled grid.
  expect_kymatio(test::kymatio::wide, std::size(test::kymatio::wide), 2, 20, 24, 3, 4, {1, 2 * 61, 2, 3});
}

TEST(Scattering, BackwardIsTheForwardsDerivative) {
  const Shape shape{2, 1, 10, 12};
  const Tensor x0 = testing::random_tensor(shape, 5), dir = testing::random_tensor(shape, 6);
  const Var x(x0, true);
  const Var y = F::scattering2d(x, 2, 4);
  const Tensor w = testing::random_tensor(y.shape(), 7);
  autograd::backward(y, w);
  const std::vector<float> g = x.grad().to_vector<float>(), d = dir.to_vector<float>(), wv = w.to_vector<float>();
  double analytic = 0.0;
  for (std::size_t i = 0; i < g.size(); ++i) analytic += double(g[i]) * (d[i] - 0.5);
  const auto loss_at = [&](double t) {
    std::vector<float> xs = x0.to_vector<float>();
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] += static_cast<float>(t * (d[i] - 0.5));
    const std::vector<float> ys = F::scattering2d(Var(Tensor::from_vector(xs, shape)), 2, 4).value().to_vector<float>();
    double s = 0.0;
    for (std::size_t i = 0; i < ys.size(); ++i) s += double(ys[i]) * wv[i];
    return s;
  };
  const double h = 1e-2, numeric = (loss_at(h) - loss_at(-h)) / (2 * h);
  EXPECT_NEAR(analytic, numeric, 2e-3 * std::fabs(numeric) + 1e-4);
}

TEST(Scattering, RefusesBadSizesAndSettings) {
  EXPECT_THROW(F::scattering2d(Var(Tensor::zeros({1, 1, 3, 8})), 2, 8), InvalidArgument);  // 3 < 2^J
  EXPECT_THROW(F::scattering2d(Var(Tensor::zeros({1, 1, 8, 8})), 0, 8), InvalidArgument);
  EXPECT_THROW(F::scattering2d(Var(Tensor::zeros({1, 1, 8, 8})), 2, 0), InvalidArgument);
  EXPECT_THROW(F::scattering2d(Var(Tensor::zeros({8, 8})), 2, 8), ShapeError);
  EXPECT_THROW(nn::build_model({"scatter-linear", {1, 2, 2}, 10, "", 0}), InvalidArgument);
}

TEST(Scattering, ScatterLinearLearnsOnlyItsLastLayer) {
  auto model = nn::build_model({"scatter-linear", {1, 28, 28}, 10, "", 1});
  const auto named = model->named_parameters();
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "3.weight");
  EXPECT_EQ(named[0].second.shape(), (Shape{10, 81 * 7 * 7}));
  EXPECT_EQ(named[1].first, "3.bias");
  EXPECT_NE(model->summary().find("Scattering2d(J=2, L=8)"), std::string::npos) << model->summary();
  EXPECT_EQ(model->forward(Var(pattern(1, 28, 28))).shape(), (Shape{1, 10}));
}

// The same transform, not marked fixed: a trainer computes it at every step.
class Recomputed : public nn::Module {
 public:
  Var forward(const Var& x) override { return F::scattering2d(x, 2, 4); }
  std::string kind() const override { return "Recomputed"; }
};

std::shared_ptr<nn::Sequential> small_scatter(bool fixed) {
  nn::InitRng rng(4);
  const std::int64_t features = 1 + 2 * 4 + 16;  // J = 2, L = 4 on 8 × 8: 25 × 2 × 2
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      fixed ? nn::ModulePtr(std::make_shared<nn::Scattering2d>(2, 4)) : std::make_shared<Recomputed>(),
      std::make_shared<nn::GroupNorm>(5, features, 1e-5f, false), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(features * 4, 2, rng)});
}

nn::Dataset eight_by_eight(std::int64_t n) {
  nn::Dataset d;
  d.name = "toy8";
  d.num_classes = 2;
  d.images = testing::random_tensor({n, 1, 8, 8}, 11);
  std::vector<std::int32_t> labels;
  const std::vector<float> v = d.images.to_vector<float>();
  for (std::int64_t i = 0; i < n; ++i) labels.push_back(v[i * 64] + v[i * 64 + 9] > v[i * 64 + 63] + v[i * 64 + 54]);
  d.labels = Tensor::from_vector(labels, {n});
  return d;
}

TEST(Scattering, AFixedFrontEndIsComputedOnceWithTheSameResult) {
  const nn::Dataset data = eight_by_eight(96);
  auto cached = small_scatter(true), recomputed = small_scatter(false);
  EXPECT_TRUE(nn::split_fixed_prefix(*cached).rest);
  EXPECT_FALSE(nn::split_fixed_prefix(*recomputed).rest);
  nn::TrainOptions o;
  o.epochs = 2;
  o.batch_size = 16;
  o.lr = 0.5f;
  o.optimizer = nn::OptimizerKind::Sgd;
  o.schedule = nn::ScheduleKind::Constant;
  o.seed = 8;
  privacy::DpTrainOptions dp;
  dp.noise.noise_multiplier = 1.0;
  dp.noise.max_grad_norm = 0.5;
  dp.delta = 1e-3;
  const auto a = privacy::train_dp_classifier(*cached, data, o, dp);
  const auto b = privacy::train_dp_classifier(*recomputed, data, o, dp);
  EXPECT_EQ(a.ledger.epsilon, b.ledger.epsilon);
  const std::vector<float> wa = cached->parameters()[0].value().to_vector<float>(),
                           wb = recomputed->parameters()[0].value().to_vector<float>();
  for (std::size_t i = 0; i < wa.size(); ++i) EXPECT_NEAR(wa[i], wb[i], 1e-5f) << i;
  // Plain training likewise.
  auto c = small_scatter(true), d = small_scatter(false);
  nn::train_classifier(*c, data, o);
  nn::train_classifier(*d, data, o);
  const std::vector<float> wc = c->parameters()[0].value().to_vector<float>(),
                           wd = d->parameters()[0].value().to_vector<float>();
  for (std::size_t i = 0; i < wc.size(); ++i) EXPECT_NEAR(wc[i], wd[i], 1e-5f) << i;
}

// From the command line: DP training, an attack through the transform's backward pass, a
// certification sweep, and bound propagation refusing the layer by name.
TEST(Scattering, ScatterLinearFromTheCommandLine) {
  const std::string dir = testing::make_temp_dir("aegis_scatter_cli"), model = dir + "/scatter.safetensors";
  const testing::CliRun t = testing::run_cli(
      "train --data digits --model scatter-linear --dp --noise-multiplier 1.0 --delta 1e-4 --batch-size 256 "
      "--epochs 6 --optimizer sgd --lr 4 --momentum 0.9 --max-grad-norm 0.1 --device cpu --quiet --json --out " +
      model);
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_NE(t.out.find("\"model\":\"scatter-linear\""), std::string::npos) << t.out;
  const testing::CliRun a = testing::run_cli("attack --model " + model +
                                             " --data digits --attack pgd-linf --eps 0.1 --steps 5 --max 20 --json");
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_NE(a.out.find("robust_accuracy"), std::string::npos) << a.out;
  const testing::CliRun c = testing::run_cli("certify --model " + model +
                                             " --data digits --sigma 0.25 --n0 20 --n 100 "
                                             "--max 5 --quiet --out " +
                                             dir + "/cert.tsv");
  EXPECT_EQ(c.status, 0) << c.err;
  const testing::CliRun v = testing::run_cli("verify --model " + model + " --data digits --quiet --eps 0.01");
  EXPECT_EQ(v.status, 1);
  EXPECT_NE(v.err.find("Scattering2d"), std::string::npos) << v.err;
}

}  // namespace
}  // namespace aegis
