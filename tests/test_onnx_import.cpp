// ONNX import (nn/onnx_import.h, nn/graph_module.h): parity with onnxruntime on the fixtures of
// tests/onnx/make_fixtures.py, input and parameter gradients, and the refusals of malformed or
// unsupported models. The fixtures are read from $AEGIS_ONNX_FIXTURES when set (tools/bootstrap.sh
// test regenerates them there with the current onnx and onnxruntime), else from the committed
// copies in tests/onnx/fixtures.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nn/model_file.h"
#include "nn/onnx_import.h"
#include "nn/zoo.h"
#include "runtime/autograd.h"
#include "support/testing.h"
#include "support/zoo_twin.h"

namespace aegis {
namespace {

using autograd::Var;

std::string fixture_dir() {
  const char* env = std::getenv("AEGIS_ONNX_FIXTURES");
  return env && *env ? std::string(env) : testing::source_dir() + "/tests/onnx/fixtures";
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Tensor read_floats(const std::string& path, const Shape& shape) {
  const std::string bytes = read_bytes(path);
  EXPECT_EQ(bytes.size(), static_cast<std::size_t>(shape_numel(shape)) * 4) << path;
  std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
  std::memcpy(v.data(), bytes.data(), std::min(bytes.size(), v.size() * 4));
  return Tensor::from_vector(v, shape);
}

struct Fixture {
  nn::OnnxModel onnx;
  Tensor input, expected;
  std::string dir;
};

// Fixtures named torch_* were exported by torch (tests/onnx/make_torch_fixtures.py) and are read
// from the source tree: the test command has no torch to make them again.
Fixture load_fixture(const std::string& name) {
  const std::string dir = (name.rfind("torch_", 0) == 0 ? testing::source_dir() + "/tests/onnx/torch_fixtures"
                                                        : fixture_dir()) +
                          "/" + name;
  const auto meta = nlohmann::json::parse(read_bytes(dir + "/meta.json"));
  Fixture f;
  f.dir = dir;
  f.onnx = nn::load_onnx(dir + "/model.onnx");
  f.input = read_floats(dir + "/input.bin", meta["input_shape"].get<Shape>());
  f.expected = read_floats(dir + "/output.bin", meta["output_shape"].get<Shape>());
  return f;
}

// The graph's final Softmax/LogSoftmax, which aegis skips, applied to its logits on the host.
std::vector<double> apply_final(const std::string& op, const Tensor& logits) {
  std::vector<double> z = testing::to_double(logits);
  if (op.empty()) return z;
  const std::int64_t n = logits.size(0), k = logits.size(1);
  for (std::int64_t i = 0; i < n; ++i) {
    double* row = z.data() + i * k;
    double m = row[0], sum = 0.0;
    for (std::int64_t j = 0; j < k; ++j) m = std::max(m, row[j]);
    for (std::int64_t j = 0; j < k; ++j) sum += std::exp(row[j] - m);
    for (std::int64_t j = 0; j < k; ++j)
      row[j] = op == "Softmax" ? std::exp(row[j] - m) / sum : row[j] - m - std::log(sum);
  }
  return z;
}

// Whether a central difference of `f` (the scalar as a function of one coordinate's offset)
// agrees with `analytic`. ReLU and max pooling make f piecewise smooth: with one kink between x
// and x + h where the slope changes from a to b, the central difference is a + (b − a)(x + h − k)/(2h)
// and the second difference f(x+h) − 2f(x) + f(x−h) is exactly (b − a)(x + h − k). So the
// check allows the measured |second difference|/(2h) on top of the float32 tolerance: where f is
// smooth (almost everywhere) that term is O(h·f'') and the check is tight; a wrong backward
// disagrees there. Tolerance: float32 rounding of an O(1) sum divided by 2h = 2e-3 stays near 5e-4.
template <class F>
bool central_difference_agrees(F&& f, double analytic, double* closest) {
  const double at = f(0.0f);
  double best_excess = 1e300;
  for (double h : {3e-3, 1e-3}) {
    const double up = f(static_cast<float>(h)), down = f(static_cast<float>(-h));
    const double numeric = (up - down) / (2.0 * h);
    const double bend = std::fabs(up - 2.0 * at + down) / (2.0 * h);
    const double excess = std::fabs(numeric - analytic) - (1e-3 + 1e-2 * std::fabs(analytic) + bend);
    if (excess <= 0.0) return true;
    if (excess < best_excess) {
      best_excess = excess;
      *closest = numeric;
    }
  }
  return false;
}

#define REQUIRE_ONNX() \
  if (!nn::onnx_supported()) GTEST_SKIP() << "this build has no ONNX support (libonnx-dev was not found)"

class OnnxParity : public ::testing::TestWithParam<const char*> {};

TEST_P(OnnxParity, LogitsMatchOnnxruntime) {
  REQUIRE_ONNX();
  Fixture f = load_fixture(GetParam());
  nn::GraphModule& model = *f.onnx.model;
  nn::FrozenScope frozen(model);
  const Var y = model.forward(Var(f.input));
  ASSERT_EQ(y.shape(), f.expected.shape());
  // float32 through at most a few hundred accumulated products per output, in a different
  // summation order than onnxruntime's (and BatchNorm folded into the weights): 1e-4 relative,
  // with an absolute floor for outputs near zero.
  const std::vector<double> actual = apply_final(model.skipped_final(), y.value());
  const std::vector<double> expected = testing::to_double(f.expected);
  EXPECT_TRUE(testing::all_close(actual, expected, 1e-4, 1e-5)) << model.summary();
  double worst = 0.0;
  for (std::size_t i = 0; i < actual.size(); ++i)
    worst = std::max(worst, std::fabs(actual[i] - expected[i]) / std::max(std::fabs(expected[i]), 1e-3));
  RecordProperty("max_relative_error", std::to_string(worst));
  std::printf("%s: max relative error vs onnxruntime %.2e over %zu outputs\n", GetParam(), worst, actual.size());
}

TEST_P(OnnxParity, InputGradientsMatchFiniteDifferences) {
  REQUIRE_ONNX();
  Fixture f = load_fixture(GetParam());
  nn::GraphModule& model = *f.onnx.model;
  nn::FrozenScope frozen(model);
  // Two examples keep the check fast; every input element is checked.
  const Tensor x = f.input.rows(0, 2).clone();
  Var xv(x.clone(), true);
  autograd::backward(testing::weighted_sum(model.forward(xv), 7));
  const std::vector<float> grad = xv.grad().to_vector<float>();
  int wrong = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    auto eval = [&](float delta) {
      Tensor moved = x.clone();
      moved.data<float>()[i] += delta;
      return testing::weighted_sum(model.forward(Var(moved)), 7).value().item();
    };
    double closest = 0.0;
    if (!central_difference_agrees(eval, grad[static_cast<std::size_t>(i)], &closest) && wrong++ < 5)
      ADD_FAILURE() << "input element " << i << ": backward " << grad[static_cast<std::size_t>(i)]
                    << ", closest central difference " << closest;
  }
  EXPECT_EQ(wrong, 0) << "of " << x.numel() << " input elements";
}

TEST_P(OnnxParity, ParameterGradientsMatchFiniteDifferences) {
  REQUIRE_ONNX();
  Fixture f = load_fixture(GetParam());
  nn::GraphModule& model = *f.onnx.model;
  ASSERT_FALSE(model.named_parameters().empty());
  model.zero_grad();
  if (std::ifstream(f.dir + "/param_grads.json").good()) {
    // torch's float64 gradients of sum(logits · W) at three entries of every parameter
    // (tests/onnx/make_torch_fixtures.py): with max pooling after the first convolution, a step
    // of 1e-3 in one of its weights moves many pooling winners, and central differences are off
    // by several percent in float64 as well.
    const auto grads = nlohmann::json::parse(read_bytes(f.dir + "/param_grads.json"));
    const Tensor w = read_floats(f.dir + "/weights.bin", f.expected.shape());
    // Σ W·y as a 1×1 linear map over the flattened logits.
    const std::int64_t n = w.numel();
    autograd::backward(nn::F::linear(nn::F::reshape(model.forward(Var(f.input)), {1, n}),
                                     Var(w.reshape({1, n}), false), Var()));
    for (const auto& [name, p] : model.named_parameters()) {
      ASSERT_TRUE(grads.contains(name)) << name << " is not a parameter of the torch model";
      const std::vector<float> g = p.grad().to_vector<float>();
      const auto& entry = grads[name];
      for (std::size_t k = 0; k < entry["index"].size(); ++k) {
        const double expected = entry["grad"][k].get<double>();
        const double actual = g[entry["index"][k].get<std::size_t>()];
        EXPECT_NEAR(actual, expected, 1e-4 * std::fabs(expected) + 1e-5) << name << "[" << entry["index"][k] << "]";
      }
    }
    return;
  }
  const Tensor x = f.input.rows(0, 2).clone();
  autograd::backward(testing::weighted_sum(model.forward(Var(x)), 11));
  // One weight of each parameter tensor against a central difference of the same scalar.
  // (Not a structured binding: lambdas capture those only from C++20 on.)
  for (const auto& named : model.named_parameters()) {
    const std::string& name = named.first;
    const Var& p = named.second;
    ASSERT_TRUE(p.has_grad()) << name;
    const std::int64_t at = p.value().numel() / 2;
    const double analytic = p.grad().to_vector<float>()[static_cast<std::size_t>(at)];
    auto eval = [&](float delta) {
      Var q = p;
      float* w = q.mutable_value().data<float>() + at;
      const float saved = *w;
      *w = saved + delta;
      autograd::Var y;
      {
        nn::FrozenScope frozen(model);
        y = testing::weighted_sum(model.forward(Var(x)), 11);
      }
      *w = saved;
      return y.value().item();
    };
    double closest = 0.0;
    EXPECT_TRUE(central_difference_agrees(eval, analytic, &closest))
        << name << ": backward " << analytic << ", closest central difference " << closest;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OnnxParity,
                         ::testing::Values("mlp", "digits_cnn", "digits_bn", "lenet", "resnet_bn", "normalized_cnn",
                                           "pool_concat", "depthwise", "softplus_pads", "ceil_pools", "dilated",
                                           "zoo_mlp", "zoo_cnn_res", "tied_mlp", "torch_cnn_fmnist",
                                           "torch_resnet_cifar", "torch_mobile"));

TEST(OnnxImport, GraphEqualsTheZooModelBitForBit) {
  REQUIRE_ONNX();
  for (const auto& [fixture, zoo_name] :
       {std::pair<const char*, const char*>{"zoo_mlp", "mlp"}, {"zoo_cnn_res", "cnn-res"}}) {
    Fixture f = load_fixture(fixture);
    auto zoo = testing::zoo_twin(*f.onnx.model, zoo_name);
    nn::FrozenScope frozen_graph(*f.onnx.model), frozen_zoo(*zoo);
    // The same ops in the same order on the same weights: identical floats, not merely close.
    EXPECT_EQ(f.onnx.model->forward(Var(f.input)).value().to_vector<float>(),
              zoo->forward(Var(f.input)).value().to_vector<float>())
        << fixture;
  }
}

// aegis certify on the imported mlp and on the zoo mlp with its weights, saved as safetensors:
// the same rows (but for the time column), from the same seed.
TEST(OnnxImport, CertifyRowsEqualTheZooModelsRows) {
  REQUIRE_ONNX();
  const std::string onnx_path = fixture_dir() + "/zoo_mlp/model.onnx";
  const std::string dir = testing::make_temp_dir("onnx_certify");
  testing::save_zoo_twin(onnx_path, "mlp", dir + "/mlp.safetensors");
  auto rows = [&](const std::string& model, const std::string& out) {
    const testing::CliRun r = testing::run_cli("certify --model " + model +
                                               " --data digits --device cpu --sigma 0.5 --n0 20 "
                                               "--n 300 --max 12 --seed 5 --quiet --out " +
                                               out);
    EXPECT_EQ(r.status, 0) << r.err;
    std::ifstream in(out);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line.substr(0, line.rfind('\t')));  // drop the time
    return lines;
  };
  const std::vector<std::string> from_onnx = rows(onnx_path, dir + "/onnx.tsv");
  const std::vector<std::string> from_zoo = rows(dir + "/mlp.safetensors", dir + "/zoo.tsv");
  EXPECT_EQ(from_onnx.size(), 13u);
  EXPECT_EQ(from_onnx, from_zoo);
}

TEST(OnnxImport, TorchStyleNamesAndFoldedBatchNorm) {
  REQUIRE_ONNX();
  Fixture f = load_fixture("resnet_bn");
  const nn::GraphModule& m = *f.onnx.model;
  std::vector<std::string> names;
  for (const auto& [name, p] : m.named_parameters()) names.push_back(name);
  // Every BatchNorm follows a convolution and is folded into it: only convolutions and fc remain.
  EXPECT_EQ(names,
            (std::vector<std::string>{"conv1.weight", "conv1.bias", "layer1.0.conv1.weight", "layer1.0.conv1.bias",
                                      "layer1.0.conv2.weight", "layer1.0.conv2.bias", "layer1.0.shortcut.0.weight",
                                      "layer1.0.shortcut.0.bias", "fc.weight", "fc.bias"}));
  EXPECT_EQ(m.input_shape(), (Shape{3, 8, 8}));
  EXPECT_EQ(m.num_classes(), 6);
}

TEST(OnnxImport, AnyBatchSizeRuns) {
  REQUIRE_ONNX();
  Fixture f = load_fixture("lenet");
  nn::FrozenScope frozen(*f.onnx.model);
  const Var one = f.onnx.model->forward(Var(f.input.rows(2, 3).clone()));
  const Var all = f.onnx.model->forward(Var(f.input));
  EXPECT_TRUE(testing::all_close(one.value(), testing::to_double(all.value().rows(2, 3)), 1e-6, 1e-7));
  EXPECT_THROW(f.onnx.model->forward(Var(Tensor::zeros({2, 1, 10, 12}))), ShapeError);
  // A graph exported with a fixed batch of 2 (and a Reshape to [2, -1]) runs one example too.
  Fixture fixed = load_fixture("normalized_cnn");
  nn::FrozenScope frozen_fixed(*fixed.onnx.model);
  const Var first = fixed.onnx.model->forward(Var(fixed.input.rows(1, 2).clone()));
  const Var both = fixed.onnx.model->forward(Var(fixed.input));
  EXPECT_TRUE(testing::all_close(first.value(), testing::to_double(both.value().rows(1, 2)), 1e-6, 1e-7));
}

TEST(OnnxImport, LoadClassifierReadsOnnx) {
  REQUIRE_ONNX();
  const nn::LoadedClassifier c = nn::load_classifier(fixture_dir() + "/digits_cnn/model.onnx");
  EXPECT_EQ(c.spec.name, "onnx");
  EXPECT_EQ(c.spec.input_shape, (Shape{1, 8, 8}));
  EXPECT_EQ(c.spec.num_classes, 10);
  EXPECT_EQ(c.metadata.at("onnx.opset"), "17");
}

TEST(OnnxImport, RefusesUnsupportedModelsByName) {
  REQUIRE_ONNX();
  const std::string bad = fixture_dir() + "/bad/";
  testing::expect_error<Unsupported>(
      [&] { nn::load_onnx(bad + "unsupported_op.onnx"); }, "unsupported_op.onnx",
      "node 'my_erf' (Erf): operator 'Erf' is not supported; supported: Add, AveragePool");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "two_outputs.onnx"); }, "two_outputs.onnx", "2 outputs");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "dynamic_height.onnx"); }, "dynamic_height.onnx",
                                     "dimension 2 is 'H', not a fixed size");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "old_opset.onnx"); }, "old_opset.onnx", "opset 9");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "int_input.onnx"); }, "int_input.onnx",
                                     "is not a float tensor");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "rank3_input.onnx"); }, "rank3_input.onnx",
                                     "has rank 3; expected an image batch [N, C, H, W]");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "batch_arithmetic.onnx"); }, "batch_arithmetic.onnx",
                                     "arithmetic on the batch size cannot be resolved at load");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "dilated_pool.onnx"); }, "dilated_pool.onnx",
                                     "node 'dilated' (MaxPool): dilations [2, 2] of a pooling are not supported");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "allowzero_zero.onnx"); }, "allowzero_zero.onnx",
                                     "allowzero = 1 with a 0 in the target shape");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "bn_training_mode.onnx"); }, "bn_training_mode.onnx",
                                     "training_mode = 1 is not supported: aegis runs BatchNorm frozen, in inference "
                                     "form; export the model in eval() mode (or use GroupNorm");
}

TEST(OnnxImport, RefusesMalformedFiles) {
  REQUIRE_ONNX();
  const std::string dir = testing::make_temp_dir("onnx_bad");
  const std::string good = read_bytes(fixture_dir() + "/lenet/model.onnx");
  testing::expect_error<IoError>([&] { nn::load_onnx(dir + "/missing.onnx"); }, "missing.onnx", "cannot open");
  // Every truncation of a valid model is refused with a typed error, never a crash.
  for (std::size_t keep :
       {std::size_t{0}, std::size_t{1}, std::size_t{7}, good.size() / 3, good.size() / 2, good.size() - 1}) {
    try {
      nn::load_onnx_bytes(good.substr(0, keep), "cut.onnx", dir);
      ADD_FAILURE() << "a model cut to " << keep << " of " << good.size() << " bytes loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.onnx"), std::string::npos) << e.what();
    }
  }
  std::string garbage(4096, '\0');
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>((i * 2654435761u) >> 13);
  testing::expect_error<IoError>([&] { nn::load_onnx_bytes(garbage, "garbage.onnx", dir); }, "garbage.onnx",
                                 "not an ONNX model");
  // External data that is missing or shorter than the tensor needs.
  const std::string ext = fixture_dir() + "/resnet_bn";
  testing::expect_error<IoError>([&] { nn::load_onnx_bytes(read_bytes(ext + "/model.onnx"), "ext.onnx", dir); },
                                 "ext.onnx", "cannot open external data file");
  const std::string data = read_bytes(ext + "/model.onnx.data");
  { std::ofstream(dir + "/model.onnx.data", std::ios::binary) << data.substr(0, data.size() / 2); }
  testing::expect_error<IoError>([&] { nn::load_onnx_bytes(read_bytes(ext + "/model.onnx"), "ext.onnx", dir); },
                                 "ext.onnx", "truncated");
}

TEST(OnnxImport, BuildWithoutOnnxSaysSo) {
  if (nn::onnx_supported()) GTEST_SKIP() << "this build reads ONNX; the refusal is for builds without it";
  testing::expect_error<Unsupported>([] { nn::load_onnx("net.onnx"); }, "net.onnx", "built without ONNX support");
}

TEST(OnnxImport, CommandLineEvaluatesAnOnnxModel) {
  REQUIRE_ONNX();
  const std::string model = fixture_dir() + "/digits_cnn/model.onnx";
  const testing::CliRun e = testing::run_cli("eval --model " + model + " --data digits --device cpu --json --quiet");
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_NE(e.out.find("\"model\":\"onnx\""), std::string::npos) << e.out;
  const testing::CliRun bad =
      testing::run_cli("eval --model " + fixture_dir() + "/bad/unsupported_op.onnx --data digits --quiet");
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.err.rfind("aegis: error: ", 0), 0u) << bad.err;
  EXPECT_NE(bad.err.find("operator 'Erf' is not supported"), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  const testing::CliRun attack = testing::run_cli(
      "attack --model " + model + " --data digits --device cpu --attack pgd-linf --eps 0.05 --max 20 --json --quiet");
  EXPECT_EQ(attack.status, 0) << attack.err;
  // Bound propagation follows the graph (tests/test_bounds_graph_module.cpp).
  const testing::CliRun verify =
      testing::run_cli("verify --model " + model + " --data digits --device cpu --eps 0.01 --max 20 --quiet");
  EXPECT_EQ(verify.status, 0) << verify.err;
  EXPECT_NE(verify.out.find("crown verified accuracy"), std::string::npos) << verify.out;
}

}  // namespace
}  // namespace aegis
