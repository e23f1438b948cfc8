// Training imported ONNX models: per-example gradients through a GraphModule (DP-SGD), the export
// back to ONNX (nn/onnx_export.h) checked by aegis, onnx.checker and onnxruntime, and
// `aegis train --init net.onnx` (plain, --dp, --adv) with its refusals. Fixtures as in
// tests/test_onnx_import.cpp ($AEGIS_ONNX_FIXTURES or tests/onnx/fixtures); the onnxruntime check
// runs tests/onnx/check_export.py with $AEGIS_ONNX_PYTHON (tools/bootstrap.sh test sets it to its
// venv) or python3, and skips when neither has onnx and onnxruntime.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/model_file.h"
#include "nn/onnx_export.h"
#include "nn/onnx_import.h"
#include "nn/train_job.h"
#include "privacy/per_example.h"
#include "runtime/autograd.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;

#define REQUIRE_ONNX() \
  if (!nn::onnx_supported()) GTEST_SKIP() << "this build has no ONNX support (libonnx-dev was not found)"

std::string fixture_dir() {
  const char* env = std::getenv("AEGIS_ONNX_FIXTURES");
  return env && *env ? std::string(env) : testing::source_dir() + "/tests/onnx/fixtures";
}

std::string fixture_model(const std::string& name) {
  return fixture_dir() + "/" + name + "/model.onnx";
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The fixture's model and its recorded input batch.
struct Fixture {
  std::shared_ptr<nn::GraphModule> model;
  Tensor input;
};

Fixture load_fixture(const std::string& name) {
  const std::string dir = fixture_dir() + "/" + name;
  const auto meta = nlohmann::json::parse(read_bytes(dir + "/meta.json"));
  const Shape shape = meta["input_shape"].get<Shape>();
  const std::string bytes = read_bytes(dir + "/input.bin");
  std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
  EXPECT_EQ(bytes.size(), v.size() * 4) << dir;
  std::memcpy(v.data(), bytes.data(), std::min(bytes.size(), v.size() * 4));
  return {nn::load_onnx(dir + "/model.onnx").model, Tensor::from_vector(v, shape)};
}

Tensor labels_for(std::int64_t n, std::int64_t classes) {
  std::vector<std::int32_t> y;
  for (std::int64_t i = 0; i < n; ++i) y.push_back(static_cast<std::int32_t>((i * 7 + 3) % classes));
  return Tensor::from_vector(y, {n});
}

using testing::flat_grads;

using testing::norm_of;

// ---- per-example gradients through a GraphModule ----------------------------------------------

class GraphPerExample : public ::testing::TestWithParam<const char*> {};

// One backward pass over the batch with capture on gives, for every example, the gradient that
// the example alone (batch size 1, capture off) gives: its norm, and the clipped sum built from it.
TEST_P(GraphPerExample, EqualsOneExampleAtATime) {
  REQUIRE_ONNX();
  Fixture f = load_fixture(GetParam());
  nn::GraphModule& m = *f.model;
  const std::int64_t n = f.input.size(0);
  const Tensor y = labels_for(n, m.num_classes());
  auto backward_rows = [&](std::int64_t b, std::int64_t e) {
    const Var out = m.forward(Var(f.input.rows(b, e).clone()));
    autograd::backward(nn::F::cross_entropy(out, y.rows(b, e).clone(), nn::Reduction::Sum));
  };
  privacy::enable_per_example_capture(m, false);
  std::vector<std::vector<double>> per_example;
  for (std::int64_t i = 0; i < n; ++i) {
    m.zero_grad();
    backward_rows(i, i + 1);
    per_example.push_back(flat_grads(m));
  }
  m.zero_grad();
  std::vector<double> norms;
  for (const auto& g : per_example) norms.push_back(norm_of(g));

  privacy::enable_per_example_capture(m, true);
  for (privacy::NormMethod method : {privacy::NormMethod::Ghost, privacy::NormMethod::Materialize}) {
    backward_rows(0, n);
    const std::vector<double> sq = testing::to_double(privacy::per_example_sq_norms(m, method));
    privacy::clear_captures(m);
    ASSERT_EQ(sq.size(), static_cast<std::size_t>(n));
    // float32 sums over a few hundred terms in another order: ~1e-6 relative; 1e-5 leaves room.
    for (std::int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(std::sqrt(sq[static_cast<std::size_t>(i)]), norms[static_cast<std::size_t>(i)],
                  1e-5 * norms[static_cast<std::size_t>(i)] + 1e-7)
          << GetParam() << " example " << i;
  }
  // Clipping to the median norm scales some examples and not others: the clipped sum must be
  // Σ_i min(1, C/(‖g_i‖ + 1e-6))·g_i of the one-at-a-time gradients.
  std::vector<double> sorted = norms;
  std::sort(sorted.begin(), sorted.end());
  privacy::ClipOptions clip;
  clip.max_grad_norm = static_cast<float>(sorted[sorted.size() / 2]);
  m.zero_grad();
  backward_rows(0, n);
  const privacy::ClipStats stats = privacy::clip_and_accumulate(m, clip);
  std::vector<double> expected(per_example[0].size(), 0.0);
  for (std::size_t i = 0; i < per_example.size(); ++i) {
    const double c = std::min(1.0, clip.max_grad_norm / (norms[i] + 1e-6));
    for (std::size_t j = 0; j < expected.size(); ++j) expected[j] += c * per_example[i][j];
  }
  const std::vector<double> got = flat_grads(m);
  double diff = 0.0;
  for (std::size_t j = 0; j < got.size(); ++j) diff = std::max(diff, std::abs(got[j] - expected[j]));
  EXPECT_LT(diff, 1e-5 * norm_of(expected) + 1e-7) << GetParam();
  EXPECT_EQ(stats.clipped + stats.unclipped, n);
  privacy::enable_per_example_capture(m, false);
}

// Residual Adds and a strided shortcut (resnet_bn), Concat and an unfolded BatchNorm
// (pool_concat), input normalization and Clip as affine steps (normalized_cnn), depthwise and
// grouped convolutions as constants (depthwise), torch's reshape plumbing (lenet), MatMul+Add and
// Gemm layouts (mlp, digits_bn).
INSTANTIATE_TEST_SUITE_P(Fixtures, GraphPerExample,
                         ::testing::Values("resnet_bn", "pool_concat", "normalized_cnn", "depthwise", "lenet", "mlp",
                                           "digits_bn", "zoo_cnn_res"));

TEST(GraphModule, RefusesALayerAppliedTwice) {
  nn::InitRng rng(1);
  nn::GraphModule g({4}, "shared.onnx");
  auto fc = std::make_shared<nn::Linear>(4, 4, rng, true);
  g.add_layer("fc", fc);
  nn::GraphStep s;
  s.op = nn::GraphOp::Layer;
  s.node = "fc_a";
  s.inputs = {0};
  s.layer = fc;
  const int first = g.add_step(s);
  s.node = "fc_b";
  s.inputs = {first};
  testing::expect_error<InvalidArgument>([&] { g.add_step(s); }, "fc_b", "a second time");
  s.layer = std::make_shared<nn::Linear>(4, 4, rng, true);  // never registered with add_layer
  testing::expect_error<InvalidArgument>([&] { g.add_step(s); }, "fc_b", "did not register");
}

// ---- the export --------------------------------------------------------------------------------

// Changes every parameter by a deterministic amount, as training would.
void perturb(nn::Module& m, std::uint64_t seed) {
  for (const auto& [name, p] : m.named_parameters()) {
    Var q = p;
    const Tensor delta = testing::random_tensor(p.shape(), seed++, -0.1f, 0.1f);
    std::vector<float> v = p.value().to_vector<float>();
    const std::vector<float> d = delta.to_vector<float>();
    for (std::size_t i = 0; i < v.size(); ++i) v[i] += d[i];
    q.mutable_value().copy_from(Tensor::from_vector(v, p.shape()));
  }
}

Tensor logits(nn::Module& m, const Tensor& x) {
  nn::FrozenScope frozen(m);
  return m.forward(Var(x)).value();
}

class OnnxExport : public ::testing::TestWithParam<const char*> {};

// Written back and read again, the model has the same parameters (names and exact values) and
// the same logits; the layout cases: Gemm transB 0/1 with alpha and beta and MatMul+Add (mlp),
// BatchNorm folded into a bias-less Conv and MatMul+Add (digits_bn), folded BatchNorms and
// external data (resnet_bn), an unfolded BatchNorm (pool_concat), affine steps (normalized_cnn),
// grouped convolutions (depthwise), one weight read by two layers (tied_mlp: two initializers).
TEST_P(OnnxExport, ReloadsWithTheSameParametersAndLogits) {
  REQUIRE_ONNX();
  Fixture f = load_fixture(GetParam());
  perturb(*f.model, 11);
  const std::string dir = testing::make_temp_dir("onnx_export");
  const std::string path = dir + "/tuned.onnx";
  nn::save_onnx(*f.model, path, {{"aegis.dataset", "digits"}, {"note", "x"}});
  const nn::OnnxModel back = nn::load_onnx(path);
  const auto a = f.model->named_parameters(), b = back.model->named_parameters();
  ASSERT_EQ(a.size(), b.size()) << GetParam();
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first) << GetParam();
    EXPECT_EQ(a[i].second.value().to_vector<float>(), b[i].second.value().to_vector<float>()) << a[i].first;
  }
  const Tensor want = logits(*f.model, f.input), got = logits(*back.model, f.input);
  EXPECT_TRUE(testing::all_close(got, testing::to_double(want), 1e-6, 1e-6)) << GetParam();
  EXPECT_EQ(back.metadata.at("aegis.dataset"), "digits");
  EXPECT_EQ(back.metadata.at("note"), "x");
  EXPECT_EQ(back.model->skipped_final(), f.model->skipped_final());
  // Written again from the reloaded model: nothing left to fold, the same file content.
  nn::save_onnx(*back.model, dir + "/again.onnx", {{"aegis.dataset", "digits"}, {"note", "x"}});
  EXPECT_EQ(read_bytes(dir + "/again.onnx"), read_bytes(path)) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OnnxExport,
                         ::testing::Values("mlp", "digits_bn", "digits_cnn", "resnet_bn", "pool_concat",
                                           "normalized_cnn", "depthwise", "lenet", "zoo_cnn_res", "tied_mlp"));

TEST(OnnxExportRefusals, NamesWhatIsWrong) {
  REQUIRE_ONNX();
  // A graph read from bytes has no source file to write back into.
  const nn::OnnxModel bytes =
      nn::load_onnx_bytes(read_bytes(fixture_model("digits_cnn")), "memory.onnx", fixture_dir() + "/digits_cnn");
  const std::string dir = testing::make_temp_dir("onnx_export_bad");
  testing::expect_error<InvalidArgument>([&] { nn::save_onnx(*bytes.model, dir + "/x.onnx"); }, "x.onnx",
                                         "not read from an ONNX file");
  // The source changed since it was loaded.
  const std::string copy = dir + "/source.onnx";
  { std::ofstream(copy, std::ios::binary) << read_bytes(fixture_model("digits_cnn")); }
  const nn::OnnxModel loaded = nn::load_onnx(copy);
  { std::ofstream(copy, std::ios::binary) << read_bytes(fixture_model("lenet")); }
  testing::expect_error<IoError>([&] { nn::save_onnx(*loaded.model, dir + "/y.onnx"); }, copy, "changed since");
  // A zoo model is not written as ONNX, and an imported one not as safetensors.
  nn::ModelSpec spec{"mlp", {1, 8, 8}, 10, "", 1};
  auto zoo = nn::build_model(spec);
  testing::expect_error<InvalidArgument>([&] { nn::save_classifier(dir + "/zoo.onnx", *zoo, spec); }, "zoo.onnx",
                                         "only for a model imported from an ONNX file");
  testing::expect_error<InvalidArgument>([&] { nn::save_classifier(dir + "/g.safetensors", *loaded.model, spec); },
                                         "g.safetensors", "give a path ending in .onnx");
}

TEST(OnnxExportRefusals, BuildWithoutOnnxSaysSo) {
  if (nn::onnx_supported()) GTEST_SKIP() << "this build writes ONNX; the refusal is for builds without it";
  nn::GraphModule g({4}, "net.onnx");
  testing::expect_error<Unsupported>([&] { nn::save_onnx(g, "tuned.onnx"); }, "tuned.onnx",
                                     "built without ONNX support");
}

// onnx.checker accepts the written file and onnxruntime computes the logits aegis computes.
TEST(OnnxExport, OnnxruntimeAgrees) {
  REQUIRE_ONNX();
  const char* env = std::getenv("AEGIS_ONNX_PYTHON");
  const std::string python = env && *env ? env : "python3";
  if (std::system((python + " -c 'import numpy, onnx, onnxruntime' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python
                 << " cannot import numpy, onnx and onnxruntime (set AEGIS_ONNX_PYTHON; tools/bootstrap.sh "
                    "test makes such a venv)";
  const std::string script = testing::source_dir() + "/tests/onnx/check_export.py";
  const std::string dir = testing::make_temp_dir("onnx_export_ort");
  for (const char* name : {"mlp", "digits_bn", "resnet_bn", "pool_concat", "normalized_cnn", "depthwise", "tied_mlp"}) {
    Fixture f = load_fixture(name);
    perturb(*f.model, 23);
    const std::string model = dir + "/" + name + ".onnx", in = dir + "/" + name + ".in",
                      out = dir + "/" + name + ".out";
    nn::save_onnx(*f.model, model, {{"aegis.dataset", "test"}});
    const std::vector<float> x = f.input.to_vector<float>();
    {
      std::ofstream(in, std::ios::binary)
          .write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * 4));
    }
    std::string shape;
    for (std::int64_t d : f.input.shape()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    const std::string cmd = python + " " + script + " " + model + " " + in + " " + shape + " " + out;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const std::string bytes = read_bytes(out);
    const Tensor z = logits(*f.model, f.input);
    std::vector<double> want = testing::to_double(z);
    ASSERT_EQ(bytes.size(), want.size() * 4) << name;
    // The graph's final Softmax/LogSoftmax, which aegis skips, applied on the host.
    const std::string final_op = f.model->skipped_final();
    const std::int64_t k = z.size(1);
    for (std::size_t r = 0; !final_op.empty() && r < want.size() / static_cast<std::size_t>(k); ++r) {
      double* row = want.data() + r * static_cast<std::size_t>(k);
      double mx = *std::max_element(row, row + k), sum = 0.0;
      for (std::int64_t j = 0; j < k; ++j) sum += std::exp(row[j] - mx);
      for (std::int64_t j = 0; j < k; ++j)
        row[j] = final_op == "Softmax" ? std::exp(row[j] - mx) / sum : row[j] - mx - std::log(sum);
    }
    std::vector<float> got(want.size());
    std::memcpy(got.data(), bytes.data(), bytes.size());
    double scale = 0.0;
    for (double w : want) scale = std::max(scale, std::abs(w));
    // float32 with another summation order in onnxruntime: 1e-4 relative to the largest logit.
    for (std::size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 1e-4 * std::max(scale, 1.0)) << name << " output " << i;
  }
}

// The library's entry point (what `aegis train --init` calls): the report names the source, and
// the written file holds the trained model (evaluating it gives the report's test accuracy).
TEST(TrainJobInit, RunTrainingFineTunesAndWritesOnnx) {
  REQUIRE_ONNX();
  const nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  const std::string dir = testing::make_temp_dir("train_job_init");
  nn::TrainJob job;
  job.init = fixture_model("digits_bn");
  job.out = dir + "/tuned.onnx";
  job.dataset = "digits";
  job.train.epochs = 1;
  job.train.batch_size = 64;
  job.train.lr = 0.01f;
  const nn::TrainReport r = nn::run_training(job, split);
  EXPECT_EQ(r.model, job.init);
  EXPECT_EQ(r.parameters, 690);
  nn::LoadedClassifier loaded = nn::load_classifier(job.out);
  EXPECT_DOUBLE_EQ(nn::evaluate(*loaded.model, split.test, Device::cpu()).accuracy, r.test_accuracy);
  // The same job with a zoo model name and no init still builds the zoo model, which ONNX cannot hold.
  job.init.clear();
  job.model = "mlp";
  testing::expect_error<InvalidArgument>([&] { nn::run_training(job, split); }, job.out, "only for a model imported");
}

}  // namespace
}  // namespace aegis
