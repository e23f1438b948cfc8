// The ONNX import of Softplus, Pad, asymmetric pads, ceil_mode, count_include_pad and dilated
// convolutions: which steps the converter builds (a Pad folded into the padding of the op that
// reads it where that is exact, a Pad step where not) and what it refuses. Their outputs and
// gradients are compared with onnxruntime and finite differences in test_onnx_import (fixtures
// softplus_pads, ceil_pools, dilated).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "nn/layers.h"
#include "nn/onnx_import.h"
#include "support/testing.h"

namespace aegis {
namespace {

std::string fixture_dir() {
  const char* env = std::getenv("AEGIS_ONNX_FIXTURES");
  return env && *env ? std::string(env) : testing::source_dir() + "/tests/onnx/fixtures";
}

#define REQUIRE_ONNX() \
  if (!nn::onnx_supported()) GTEST_SKIP() << "this build has no ONNX support (libonnx-dev was not found)"

std::vector<const nn::GraphStep*> steps_of(const nn::GraphModule& m, nn::GraphOp op) {
  std::vector<const nn::GraphStep*> out;
  for (const nn::GraphStep& s : m.steps())
    if (s.op == op) out.push_back(&s);
  return out;
}

TEST(OnnxOps, PadsFoldWhereExactAndAreStepsElsewhere) {
  REQUIRE_ONNX();
  const nn::OnnxModel onnx = nn::load_onnx(fixture_dir() + "/softplus_pads/model.onnx");
  const nn::GraphModule& m = *onnx.model;
  EXPECT_EQ(steps_of(m, nn::GraphOp::Softplus).size(), 1u);
  // Steps: c1's asymmetric pads [0, 0, 1, 1]; the Pad before the Tanh; the zero Pad before the
  // MaxPool of signed values; the Pad [1, 0, 0, 1] folded into the AveragePool, which leaves
  // asymmetric total pads. Folded: the Pad into c2 and the Pad into the MaxPool after the ReLU.
  const auto pads = steps_of(m, nn::GraphOp::Pad);
  ASSERT_EQ(pads.size(), 4u) << m.summary();
  const nn::Pad2dOptions& first = pads[0]->pad;
  EXPECT_EQ((std::vector<std::int64_t>{first.top, first.left, first.bottom, first.right}),
            (std::vector<std::int64_t>{0, 0, 1, 1}));
  for (const nn::GraphStep* s : pads) EXPECT_EQ(s->pad.value, 0.0f) << s->node;
  // torch's F.pad(x, [0, 1, 1, 0]) (left, right, top, bottom), evaluated at load from its
  // ConstantOfShape/Reshape/Slice/Transpose arithmetic, is top 1 and right 1.
  const nn::Pad2dOptions& last = pads[3]->pad;
  EXPECT_EQ((std::vector<std::int64_t>{last.top, last.left, last.bottom, last.right}),
            (std::vector<std::int64_t>{1, 0, 0, 1}));
  const auto max_pools = steps_of(m, nn::GraphOp::MaxPool);
  ASSERT_EQ(max_pools.size(), 2u);
  EXPECT_EQ(max_pools[0]->pool.padding, 1);  // the Pad's [0, 0, 1, 1] plus its own [1, 1, 0, 0]
  EXPECT_EQ(max_pools[1]->pool.padding, 0);
  const auto avg = steps_of(m, nn::GraphOp::AvgPool);
  ASSERT_EQ(avg.size(), 1u);
  EXPECT_TRUE(avg[0]->pool.count_include_pad);  // the folded zeros count, though the node says 0
  EXPECT_EQ(avg[0]->pool.padding, 0);
  // The Pad folded into c2 became its padding: the layer pads 1 on every side; c1 pads nothing.
  int convs = 0;
  for (const auto& [name, layer] : m.children())
    if (const auto* conv = dynamic_cast<const nn::Conv2d*>(layer.get())) {
      ++convs;
      EXPECT_EQ(conv->options().padding, name == "c2" ? 1 : 0) << name;
    }
  EXPECT_EQ(convs, 2);
}

TEST(OnnxOps, CeilModeAndExcludedPaddingRunInThePoolingKernels) {
  REQUIRE_ONNX();
  const nn::OnnxModel onnx = nn::load_onnx(fixture_dir() + "/ceil_pools/model.onnx");
  const nn::GraphModule& m = *onnx.model;
  const auto pads = steps_of(m, nn::GraphOp::Pad);
  ASSERT_EQ(pads.size(), 2u) << m.summary();
  EXPECT_TRUE(std::isinf(pads[0]->pad.value) && pads[0]->pad.value < 0);  // MaxPool's pads [0, 0, 1, 1]
  EXPECT_EQ(pads[1]->pad.value, 0.0f);  // the Pad node, kept: the AveragePool after it has ceil_mode
  const auto max_pools = steps_of(m, nn::GraphOp::MaxPool);
  ASSERT_EQ(max_pools.size(), 2u);
  EXPECT_TRUE(max_pools[0]->pool.ceil_mode);
  EXPECT_EQ(max_pools[0]->pool.padding, 1);
  const auto avg = steps_of(m, nn::GraphOp::AvgPool);
  ASSERT_EQ(avg.size(), 3u);
  EXPECT_TRUE(avg[0]->pool.ceil_mode && avg[0]->pool.count_include_pad);
  EXPECT_TRUE(!avg[1]->pool.ceil_mode && !avg[1]->pool.count_include_pad && avg[1]->pool.padding == 1);
  EXPECT_TRUE(avg[2]->pool.ceil_mode && !avg[2]->pool.count_include_pad);
}

TEST(OnnxOps, DilatedConvolutionsKeepTheirDilation) {
  REQUIRE_ONNX();
  const nn::OnnxModel onnx = nn::load_onnx(fixture_dir() + "/dilated/model.onnx");
  const nn::GraphModule& m = *onnx.model;
  std::map<std::string, nn::Conv2dOptions> layers;
  for (const auto& [name, layer] : m.children())
    if (const auto* conv = dynamic_cast<const nn::Conv2d*>(layer.get())) layers[name] = conv->options();
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_EQ(layers["c1"].dilation, 2);
  EXPECT_EQ(layers["c1"].padding, 2);
  EXPECT_EQ(layers["c2"].dilation, 3);
  EXPECT_EQ(layers["c2"].padding, 0);  // its pads [1, 0, 2, 1] are a Pad step
  EXPECT_EQ(steps_of(m, nn::GraphOp::Pad).size(), 1u);
  const auto grouped = steps_of(m, nn::GraphOp::FixedConv);
  ASSERT_EQ(grouped.size(), 1u);
  EXPECT_EQ(grouped[0]->conv.dilation, 2);
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

TEST(OnnxOps, TorchsOwnExportMatchesOnnxruntime) {
  REQUIRE_ONNX();
  // Written by tests/onnx/export_torch.py with torch.onnx.export (always read from the source tree:
  // the fixture script's environment has no torch).
  const std::string dir = testing::source_dir() + "/tests/onnx/torch_export";
  const nn::OnnxModel onnx = nn::load_onnx(dir + "/model.onnx");
  nn::GraphModule& m = *onnx.model;
  EXPECT_EQ(steps_of(m, nn::GraphOp::Softplus).size(), 1u);
  // Pad steps: c2's pads after the first F.pad folded in ([0, 0, 1, 1]); the second F.pad, which
  // cannot fold into a ceil_mode max pool.
  EXPECT_EQ(steps_of(m, nn::GraphOp::Pad).size(), 2u) << m.summary();
  for (const auto& [name, layer] : m.children()) {
    if (const auto* conv = dynamic_cast<const nn::Conv2d*>(layer.get())) {
      EXPECT_EQ(conv->options().dilation, 2) << name;
    }
  }
  const std::vector<float> x = read_floats(dir + "/input.bin"), expected = read_floats(dir + "/output.bin");
  ASSERT_EQ(x.size(), 4u * 3 * 16 * 15);
  nn::FrozenScope frozen(m);
  const nn::Var y = m.forward(nn::Var(Tensor::from_vector(x, {4, 3, 16, 15})));
  // float32 sums of a few hundred products in another order than onnxruntime's (as test_onnx_import).
  EXPECT_TRUE(testing::all_close(y.value(), std::vector<double>(expected.begin(), expected.end()), 1e-4, 1e-5));
}

TEST(OnnxOps, RefusesPaddingItCannotRunExactly) {
  REQUIRE_ONNX();
  const std::string bad = fixture_dir() + "/bad/";
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "reflect_pad.onnx"); }, "reflect_pad.onnx",
                                     "node 'mirror' (Pad): mode 'reflect' is not supported");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "pad_value.onnx"); }, "pad_value.onnx",
                                     "node 'ones' (Pad): constant_value 1.5");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "ceil_asymmetric.onnx"); }, "ceil_asymmetric.onnx",
                                     "node 'ceil_asym' (MaxPool): ceil_mode = 1 with pads [0, 0, 1, 1]");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "exclude_pad_asymmetric.onnx"); },
                                     "exclude_pad_asymmetric.onnx",
                                     "node 'avg_asym' (AveragePool): count_include_pad = 0 with pads [0, 0, 1, 1]");
  // Malformed arithmetic around a Pad's pads (nn/onnx/onnx_fold.cpp).
  testing::expect_error<IoError>([&] { nn::load_onnx(bad + "slice_step0.onnx"); }, "slice_step0.onnx",
                                 "node 'step0' (Slice): step 0");
  testing::expect_error<Unsupported>([&] { nn::load_onnx(bad + "constant_too_large.onnx"); }, "constant_too_large.onnx",
                                     "node 'huge' (ConstantOfShape): a constant of shape [1073741824] is too large");
}

}  // namespace
}  // namespace aegis
