// Bound propagation through imported ONNX models (nn::GraphModule; certify/bounds_graph_module.cpp):
// on every fixture of tests/onnx/make_fixtures.py the IBP and CROWN bounds hold at random points of
// the ball, at its vertices and at PGD points, and CROWN is at least as tight as IBP; the imported
// zoo mlp and cnn-res give the zoo models' own bounds; the bounds of the zoo's max-pooling models
// hold; on a graph without activations (fan-out, Add of two computed values, Concat, per-channel
// affine, average pooling) CROWN is exact; a step bound propagation cannot follow is refused by its
// node's name; `aegis verify` takes .onnx.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attacks/attacks.h"
#include "certify/bounds.h"
#include "nn/functional.h"
#include "nn/graph_module.h"
#include "nn/layers.h"
#include "nn/model_file.h"
#include "nn/onnx_import.h"
#include "nn/zoo.h"
#include "support/testing.h"
#include "support/zoo_twin.h"

namespace aegis {
namespace {

using autograd::Var;
using certify::BoundMethod;
using certify::BoundOptions;

#define REQUIRE_ONNX() \
  if (!nn::onnx_supported()) GTEST_SKIP() << "this build has no ONNX support (libonnx-dev was not found)"

std::string fixture_dir() {
  const char* env = std::getenv("AEGIS_ONNX_FIXTURES");
  return env && *env ? std::string(env) : testing::source_dir() + "/tests/onnx/fixtures";
}

std::shared_ptr<nn::GraphModule> load(const std::string& name) {
  return nn::load_onnx(fixture_dir() + "/" + name + "/model.onnx").model;
}

Shape batched(std::int64_t n, const Shape& shape) {
  Shape s{n};
  s.insert(s.end(), shape.begin(), shape.end());
  return s;
}

std::vector<float> logits(nn::Module& m, const Tensor& x) {
  nn::FrozenScope frozen(m);
  return m.forward(Var(x)).value().to_vector<float>();
}

std::vector<std::int32_t> predictions(nn::Module& m, const Tensor& x, std::int64_t k) {
  const std::vector<float> z = logits(m, x);
  std::vector<std::int32_t> y;
  for (std::size_t i = 0; i < z.size(); i += static_cast<std::size_t>(k))
    y.push_back(static_cast<std::int32_t>(std::max_element(z.begin() + i, z.begin() + i + k) - (z.begin() + i)));
  return y;
}

// Float rounding of bounds formed in float32 over a few hundred terms: a point may exceed a bound
// by a few ulps of the values involved.
double slack(double v) {
  return 1e-4 * (1.0 + std::fabs(v));
}

struct Bounds {
  std::vector<float> lower, upper, margin;  // [N·K] each
};

Bounds bounds_of(nn::Module& m, const Tensor& x, const Tensor& labels, const BoundOptions& o) {
  const certify::OutputBounds ob = certify::output_bounds(m, x, o);
  return {ob.lower.to_vector<float>(), ob.upper.to_vector<float>(),
          certify::margin_lower_bounds(m, x, labels, o).to_vector<float>()};
}

// Checks that the logits at the points `xs` (f32 [N, ...], row i a point of example i's set) lie
// within the bounds, and their margins above the margin bounds.
void expect_within(nn::Module& m, const Tensor& xs, const std::vector<std::int32_t>& y, const Bounds& b, std::int64_t k,
                   const std::string& what) {
  const std::vector<float> z = logits(m, xs);
  for (std::size_t e = 0; e < y.size(); ++e)
    for (std::int64_t c = 0; c < k; ++c) {
      const std::size_t at = e * static_cast<std::size_t>(k) + static_cast<std::size_t>(c);
      ASSERT_GE(z[at], b.lower[at] - slack(z[at])) << what << ": example " << e << " class " << c;
      ASSERT_LE(z[at], b.upper[at] + slack(z[at])) << what << ": example " << e << " class " << c;
      if (c == y[e]) continue;
      const double margin = static_cast<double>(z[e * static_cast<std::size_t>(k) + y[e]]) - z[at];
      ASSERT_GE(margin, b.margin[at] - slack(margin)) << what << ": example " << e << " margin to class " << c;
    }
}

// A point of each example's L∞ ball ∩ [0, 1]: uniform inside (vertex = false) or a random vertex.
Tensor ball_point(const Tensor& x, double eps, std::uint64_t seed, bool vertex) {
  std::vector<float> v = x.to_vector<float>();
  const std::vector<float> r = testing::random_tensor({x.numel()}, seed, -1.0f, 1.0f).to_vector<float>();
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double d = vertex ? (r[i] >= 0.0f ? eps : -eps) : eps * r[i];
    v[i] = static_cast<float>(std::min(1.0, std::max(0.0, v[i] + d)));
  }
  return Tensor::from_vector(v, x.shape());
}

class GraphBounds : public ::testing::TestWithParam<const char*> {};

TEST_P(GraphBounds, HoldAtSampledAndPgdPointsAndCrownIsTighter) {
  REQUIRE_ONNX();
  auto model = load(GetParam());
  const std::int64_t n = 3, k = model->num_classes();
  const Tensor x = testing::random_tensor(batched(n, model->input_shape()), 11, 0.1f, 0.9f);
  const std::vector<std::int32_t> y = predictions(*model, x, k);
  const Tensor labels = Tensor::from_vector(y, {n});
  const double eps = 0.03;
  const Bounds ibp = bounds_of(*model, x, labels, {Norm::Linf, eps, BoundMethod::Interval});
  const Bounds crown = bounds_of(*model, x, labels, {Norm::Linf, eps, BoundMethod::Linear});
  for (int s = 0; s < 200; ++s) {
    const Tensor p = ball_point(x, eps, 100 + static_cast<std::uint64_t>(s), s % 2 == 1);
    expect_within(*model, p, y, ibp, k, "ibp, sample " + std::to_string(s));
    expect_within(*model, p, y, crown, k, "crown, sample " + std::to_string(s));
  }
  attacks::AttackOptions ao;
  ao.eps = attacks::broadcast_per_example(static_cast<float>(eps), 1);
  ao.steps = 20;
  ao.restarts = 2;
  ao.early_stop = false;
  const Tensor adv = attacks::pgd(*model, x, labels, ao).adversarial.to(Device::cpu());
  expect_within(*model, adv, y, crown, k, "crown, PGD");
  // CROWN is intersected with IBP: never looser; and on these random (untrained) nets with
  // undecided ReLUs it is strictly tighter in total.
  double width_ibp = 0.0, width_crown = 0.0;
  for (std::size_t i = 0; i < ibp.lower.size(); ++i) {
    EXPECT_GE(crown.lower[i], ibp.lower[i]);
    EXPECT_LE(crown.upper[i], ibp.upper[i]);
    if (std::isfinite(ibp.margin[i])) {
      EXPECT_GE(crown.margin[i], ibp.margin[i]);
    }
    width_ibp += static_cast<double>(ibp.upper[i]) - ibp.lower[i];
    width_crown += static_cast<double>(crown.upper[i]) - crown.lower[i];
  }
  EXPECT_LT(width_crown, width_ibp);
  EXPECT_GT(width_crown, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GraphBounds,
                         ::testing::Values("mlp", "digits_cnn", "lenet", "resnet_bn", "normalized_cnn", "pool_concat",
                                           "depthwise", "zoo_mlp", "zoo_cnn_res"));

// The zoo's models with max pooling (lenet-2conv: ReLU; cnn-fmnist: Tanh) go through the same
// MaxPool node: their bounds hold at sampled points too.
TEST(GraphBoundsZoo, ZooMaxPoolModelsHoldAtSampledPoints) {
  for (const auto& [name, shape] :
       {std::pair<const char*, Shape>{"lenet-2conv", {1, 8, 8}}, {"cnn-fmnist", {1, 16, 16}}}) {
    SCOPED_TRACE(name);
    const nn::ModelSpec spec{name, shape, 10, "", 3};
    auto model = nn::build_model(spec);
    const std::int64_t n = 2, k = 10;
    const Tensor x = testing::random_tensor(batched(n, shape), 21, 0.1f, 0.9f);
    const std::vector<std::int32_t> y = predictions(*model, x, k);
    const Tensor labels = Tensor::from_vector(y, {n});
    const double eps = 0.02;
    const Bounds ibp = bounds_of(*model, x, labels, {Norm::Linf, eps, BoundMethod::Interval});
    const Bounds crown = bounds_of(*model, x, labels, {Norm::Linf, eps, BoundMethod::Linear});
    for (int s = 0; s < 100; ++s) {
      const Tensor p = ball_point(x, eps, 300 + static_cast<std::uint64_t>(s), s % 2 == 1);
      expect_within(*model, p, y, ibp, k, "ibp, sample " + std::to_string(s));
      expect_within(*model, p, y, crown, k, "crown, sample " + std::to_string(s));
    }
    for (std::size_t i = 0; i < ibp.lower.size(); ++i) EXPECT_GE(crown.lower[i], ibp.lower[i]);
  }
}

TEST(GraphBoundsZoo, ImportedZooModelsGiveTheZooModelsBounds) {
  REQUIRE_ONNX();
  for (const auto& [fixture, zoo_name] :
       {std::pair<const char*, const char*>{"zoo_mlp", "mlp"}, {"zoo_cnn_res", "cnn-res"}}) {
    auto graph = load(fixture);
    auto zoo = testing::zoo_twin(*graph, zoo_name);
    const std::int64_t n = 4, k = graph->num_classes();
    const Tensor x = testing::random_tensor(batched(n, graph->input_shape()), 5, 0.0f, 1.0f);
    const Tensor labels = Tensor::from_vector(predictions(*graph, x, k), {n});
    for (const Norm norm : {Norm::Linf, Norm::L2})
      for (const BoundMethod method : {BoundMethod::Interval, BoundMethod::Linear}) {
        const BoundOptions o{norm, norm == Norm::Linf ? 0.02 : 0.1, method};
        const Bounds from_graph = bounds_of(*graph, x, labels, o), from_zoo = bounds_of(*zoo, x, labels, o);
        for (const auto& [a, b] : {std::pair{&from_graph.lower, &from_zoo.lower},
                                   {&from_graph.upper, &from_zoo.upper},
                                   {&from_graph.margin, &from_zoo.margin}})
          for (std::size_t i = 0; i < a->size(); ++i) {
            if (std::isinf((*b)[i])) {
              EXPECT_EQ((*a)[i], (*b)[i]);
              continue;
            }
            // The same nodes in the same order: equal up to float rounding (1e-5 relative).
            EXPECT_NEAR((*a)[i], (*b)[i], 1e-5 * (1.0 + std::fabs((*b)[i])))
                << fixture << " " << norm_name(norm) << " " << certify::bound_method_name(method) << " entry " << i;
          }
      }
  }
}

// input [2, 3, 3] → a = conv(x), b = affine(x) (negative scale), c = conv(b), d = a + c,
// e = concat(d, a), f = avgpool(e), logits = linear(flatten(f)) and a second reader of a: no
// activation, so the network is affine and CROWN's margin bound must be its exact minimum.
std::shared_ptr<nn::GraphModule> linear_dag() {
  nn::InitRng rng(7);
  auto g = std::make_shared<nn::GraphModule>(Shape{2, 3, 3}, "linear-dag");
  auto conv_a = std::make_shared<nn::Conv2d>(2, 2, 2, rng), conv_c = std::make_shared<nn::Conv2d>(2, 2, 2, rng);
  auto fc = std::make_shared<nn::Linear>(4, 3, rng);
  g->add_layer("conv_a", conv_a);
  g->add_layer("conv_c", conv_c);
  g->add_layer("fc", fc);
  auto step = [](nn::GraphOp op, std::vector<int> inputs, const std::string& name) {
    nn::GraphStep s;
    s.op = op;
    s.inputs = std::move(inputs);
    s.node = name;
    return s;
  };
  nn::GraphStep sa = step(nn::GraphOp::Layer, {0}, "a");
  sa.layer = conv_a;
  const int a = g->add_step(sa);
  nn::GraphStep sb = step(nn::GraphOp::ChannelAffine, {0}, "b");
  sb.scale = {1.5f, -0.75f};
  sb.shift = {0.25f, -0.5f};
  sb.shape = {2, 3, 3};
  const int b = g->add_step(sb);
  nn::GraphStep sc = step(nn::GraphOp::Layer, {b}, "c");
  sc.layer = conv_c;
  const int c = g->add_step(sc);
  const int d = g->add_step(step(nn::GraphOp::Add, {a, c}, "d"));
  const int e = g->add_step(step(nn::GraphOp::Concat, {d, a}, "e"));
  nn::GraphStep sf = step(nn::GraphOp::AvgPool, {e}, "f");
  sf.pool = {2, 1, 0};
  const int f = g->add_step(sf);
  const int flat = g->add_step(step(nn::GraphOp::Flatten, {f}, "flat"));
  nn::GraphStep so = step(nn::GraphOp::Layer, {flat}, "out");
  so.layer = fc;
  g->set_output(g->add_step(so), {3});
  return g;
}

TEST(GraphBoundsDag, CrownIsExactOnAnAffineDag) {
  auto g = linear_dag();
  const std::int64_t n = 2, k = 3, d = 18;
  const Tensor x = testing::random_tensor({n, 2, 3, 3}, 3, 0.2f, 0.8f);
  const std::vector<std::int32_t> y{0, 2};
  const Tensor labels = Tensor::from_vector(y, {n});
  const double eps = 0.1;
  const Bounds crown = bounds_of(*g, x, labels, {Norm::Linf, eps, BoundMethod::Linear});
  const Bounds ibp = bounds_of(*g, x, labels, {Norm::Linf, eps, BoundMethod::Interval});
  // The margins are affine in x: their gradient from unit steps (exact up to rounding), and the
  // minimum over the box [x − ε, x + ε] (inside [0, 1]) coordinate by coordinate.
  const std::vector<float> x0 = x.to_vector<float>(), z0 = logits(*g, x);
  std::vector<double> exact(static_cast<std::size_t>(n * k), 0.0);
  for (std::int64_t e = 0; e < n; ++e)
    for (std::int64_t c = 0; c < k; ++c) exact[static_cast<std::size_t>(e * k + c)] = z0[e * k + y[e]] - z0[e * k + c];
  for (std::int64_t j = 0; j < d; ++j) {
    std::vector<float> xj = x0;
    for (std::int64_t e = 0; e < n; ++e) xj[static_cast<std::size_t>(e * d + j)] += 1.0f;
    const std::vector<float> zj = logits(*g, Tensor::from_vector(xj, x.shape()));
    for (std::int64_t e = 0; e < n; ++e)
      for (std::int64_t c = 0; c < k; ++c) {
        const double slope = (static_cast<double>(zj[e * k + y[e]]) - zj[e * k + c]) -
                             (static_cast<double>(z0[e * k + y[e]]) - z0[e * k + c]);
        exact[static_cast<std::size_t>(e * k + c)] -= eps * std::fabs(slope);
      }
  }
  for (std::int64_t e = 0; e < n; ++e)
    for (std::int64_t c = 0; c < k; ++c) {
      if (c == y[e]) continue;
      const std::size_t at = static_cast<std::size_t>(e * k + c);
      EXPECT_NEAR(crown.margin[at], exact[at], 1e-4) << "example " << e << " class " << c;
      EXPECT_LT(ibp.margin[at], exact[at] - 1e-3) << "IBP is looser on the shared paths";
    }
}

TEST(GraphBoundsDag, UnsupportedStepIsRefusedByName) {
  auto g = std::make_shared<nn::GraphModule>(Shape{4}, "custom");
  auto flatten = std::make_shared<nn::Flatten>();
  g->add_layer("odd", flatten);
  nn::GraphStep s;
  s.op = nn::GraphOp::Layer;
  s.inputs = {0};
  s.node = "odd_layer_7";
  s.layer = flatten;
  g->set_output(g->add_step(s), {4});
  testing::expect_error<Unsupported>([&] { certify::check_supported(*g); }, "odd_layer_7", "supported steps");
  const Tensor x = Tensor::from_vector(std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}, {1, 4});
  testing::expect_error<Unsupported>(
      [&] {
        certify::output_bounds(*g, x, {Norm::Linf, 0.1, BoundMethod::Interval});
      },
      "odd_layer_7", "Flatten");
}

TEST(GraphBoundsCli, VerifyTakesAnOnnxModelAndMatchesTheZooModel) {
  REQUIRE_ONNX();
  const std::string onnx_path = fixture_dir() + "/zoo_mlp/model.onnx";
  const std::string dir = testing::make_temp_dir("onnx_verify");
  testing::save_zoo_twin(onnx_path, "mlp", dir + "/mlp.safetensors");
  auto run = [&](const std::string& model) {
    const testing::CliRun r =
        testing::run_cli("verify --model " + model + " --data digits --device cpu --eps 0.01 --max 40 --json --quiet");
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  };
  const nlohmann::json from_onnx = run(onnx_path), from_zoo = run(dir + "/mlp.safetensors");
  ASSERT_TRUE(from_onnx.contains("verified_accuracy_crown"));
  EXPECT_EQ(from_onnx["examples"], 40);
  for (const char* key : {"clean_accuracy", "verified_accuracy_ibp", "verified_accuracy_crown"})
    EXPECT_EQ(from_onnx[key], from_zoo[key]) << key;
}

}  // namespace
}  // namespace aegis
