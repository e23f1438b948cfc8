// Randomized smoothing on the GPU: the same noise and counts as the CPU, graph replay against
// eager launches, and the reduced-precision forward modes (SmoothingOptions::precision): their
// counts agree with float32's within statistical tolerance, and fp16 overflow is an error.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "certify/smoothing.h"
#include "kernels/conv.h"
#include "kernels/smoothing.h"
#include "nn/layers.h"
#include "nn/zoo.h"
#include "core/config.h"
#include "core/math_precision.h"
#include "runtime/dispatch.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::SmoothedClassifier;
using certify::SmoothingOptions;

TEST(SmoothingCuda, SameNoiseAndCountsAsTheCpu) {
  AEGIS_REQUIRE_GPU();
  const std::int64_t samples = 3, m = 2;
  const Tensor ids = Tensor::from_vector<std::int64_t>({5, 77}, {m});
  // Inputs of 28·28 and of odd sizes: a row's noise pairs then straddle rows.
  for (const std::int64_t d : {std::int64_t{28 * 28}, std::int64_t{1}, std::int64_t{17}, std::int64_t{257}}) {
    SCOPED_TRACE(d);
    const Tensor x = testing::random_tensor({m, d}, 8, 0.0f, 1.0f);
    kernels::SmoothingBatch b;
    b.rows = m * samples;
    b.samples = samples;
    b.d = d;
    b.seed = 12;
    b.sigma = 0.25f;
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const Tensor d_x = run.input(x), d_ids = run.input(ids);
      // Every operation is IEEE-rounded in the same order on both devices: bit-identical noise.
      Tensor out = run.output("noisy rows", {b.rows, d}, testing::kExact);
      AEGIS_DISPATCH(run.device(), noisy_batch(out.data<float>(), d_x.data<float>(), d_ids.data<std::int64_t>(), b));
    }));
  }
  // Counts through the whole smoothed classifier on both devices.
  const nn::ModelSpec spec{"cnn-fmnist", {1, 28, 28}, 10, "", 4};
  const Tensor images = testing::random_tensor({m, 1, 28, 28}, 9, 0.0f, 1.0f);
  SmoothingOptions o;
  o.sigma = 0.25;
  o.batch = 256;
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    auto model = nn::build_model(spec);
    model->to(run.device());
    SmoothedClassifier smoothed(*model, {1, 28, 28}, 10, run.device());
    const auto counts = smoothed.sample_counts(images, {5, 77}, 2000, certify::SamplePhase::Estimation, o);
    // Identical noise; cuDNN and the CPU convolution round differently, which can flip an argmax
    // whose top two logits agree to ~1e-6: allow 0.5% of the samples per class.
    run.check("counts", testing::flat_tensor(counts), {0.0, 10.0});
  }));
}

TEST(SmoothingCuda, GraphReplayGivesTheSameCountsAsEagerLaunches) {
  AEGIS_REQUIRE_GPU();
  nn::ModelSpec spec{"resnet20", {3, 32, 32}, 10, "", 5};
  auto model = nn::build_model(spec);
  model->to(Device::cuda(0));
  const Tensor images = testing::random_tensor({3, 3, 32, 32}, 11, 0.0f, 1.0f);
  SmoothedClassifier smoothed(*model, {3, 32, 32}, 10, Device::cuda(0));
  SmoothingOptions o;
  o.sigma = 0.5;
  o.batch = 128;  // 3·1000 rows: 23 full batches (22 replays) and a partial one
  o.cuda_graphs = false;
  const auto eager = smoothed.sample_counts(images, {7, 8, 9}, 1000, certify::SamplePhase::Estimation, o);
  EXPECT_EQ(smoothed.stats().graph_launches, 0);
  o.cuda_graphs = true;
  const auto replayed = smoothed.sample_counts(images, {7, 8, 9}, 1000, certify::SamplePhase::Estimation, o);
  EXPECT_EQ(eager, replayed);  // the same kernels on the same data, only launched differently
  // The graph must really have been used: 24 batches, the first and the partial last run eagerly.
  EXPECT_EQ(smoothed.stats().graph_failure, "");
  EXPECT_EQ(smoothed.stats().graph_launches, 22);
#if AEGIS_HAS_CUDA
  // The cuDNN plans were built once per shape, not once per batch.
  const std::int64_t plans = kernels::cuda::conv2d_cached_plans();
  smoothed.sample_counts(images, {7, 8, 9}, 1000, certify::SamplePhase::Estimation, o);
  EXPECT_EQ(kernels::cuda::conv2d_cached_plans(), plans);
  EXPECT_EQ(smoothed.stats().graph_launches, 44);
#endif
}

TEST(SmoothingCuda, ReducedPrecisionCountsAgreeWithFloat32) {
  AEGIS_REQUIRE_GPU();
  nn::ModelSpec spec{"cnn-fmnist", {1, 28, 28}, 10, "", 4};
  auto model = nn::build_model(spec);
  model->to(Device::cuda(0));
  const Tensor images = testing::random_tensor({4, 1, 28, 28}, 10, 0.0f, 1.0f);
  SmoothedClassifier smoothed(*model, {1, 28, 28}, 10, Device::cuda(0));
  SmoothingOptions o;
  o.sigma = 0.25;
  o.batch = 1000;  // 80 batches: the later ones replay a captured CUDA graph
  const std::int64_t n = 20000;
  const std::vector<std::uint64_t> ids = {0, 1, 2, 3};
  const auto full = smoothed.sample_counts(images, ids, n, certify::SamplePhase::Estimation, o);
  for (MathPrecision p : {MathPrecision::Tf32, MathPrecision::Bf16, MathPrecision::Fp16}) {
    SCOPED_TRACE(math_precision_name(p));
    o.precision = p;
    const auto reduced = smoothed.sample_counts(images, ids, n, certify::SamplePhase::Estimation, o);
    std::int64_t total = 0;
    for (std::int64_t c : reduced) total += c;
    EXPECT_EQ(total, 4 * n);  // every sample voted: no row lost to NaN or overflow
    // Same noise, so the two count vectors differ only where rounding flips an argmax. Even as
    // independent samples they would agree within 5 standard errors of a difference of proportions.
    for (std::size_t i = 0; i < full.size(); ++i) {
      const double q = (full[i] + reduced[i]) / (2.0 * n);
      EXPECT_NEAR(double(full[i]), double(reduced[i]), 5.0 * std::sqrt(2.0 * n * q * (1 - q)) + 1.0) << i;
    }
  }
}

TEST(SmoothingCuda, Fp16OverflowIsAnErrorNotAVote) {
  AEGIS_REQUIRE_GPU();
  // logits (0, w·x) with |w| up to 2·10⁵: within float32's and bf16's range, beyond fp16's 65504.
  nn::InitRng rng(0);
  auto linear = std::make_shared<nn::Linear>(16, 2, rng);
  const std::vector<float> w = testing::random_tensor({16}, 12, -2e5f, 2e5f).to_vector<float>();
  float* weight = linear->weight().value().data<float>();
  for (std::size_t j = 0; j < 16; ++j) {
    weight[j] = 0.0f;
    weight[16 + j] = w[j];
  }
  linear->bias().value().data<float>()[0] = 0.0f;
  linear->bias().value().data<float>()[1] = 0.0f;
  auto model = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Flatten>(), linear});
  model->to(Device::cuda(0));
  SmoothedClassifier smoothed(*model, {1, 4, 4}, 2, Device::cuda(0));
  const Tensor x = testing::random_tensor({1, 1, 4, 4}, 13, 0.0f, 1.0f);
  SmoothingOptions o;
  o.batch = 500;
  const std::int64_t n = 4000;
  const auto full = smoothed.sample_counts(x, {0}, n, certify::SamplePhase::Estimation, o);
  o.precision = MathPrecision::Fp16;
  try {
    smoothed.sample_counts(x, {0}, n, certify::SamplePhase::Estimation, o);
    ADD_FAILURE() << "fp16 overflow was not reported";
  } catch (const NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("fp16"), std::string::npos) << e.what();
  }
  o.precision = MathPrecision::Bf16;  // float32's range: no overflow, and almost the same classifier
  const auto bf16 = smoothed.sample_counts(x, {0}, n, certify::SamplePhase::Estimation, o);
  EXPECT_EQ(bf16[0] + bf16[1], n);
  const double q = (full[1] + bf16[1]) / (2.0 * n);  // as in ReducedPrecisionCountsAgreeWithFloat32
  EXPECT_NEAR(double(full[1]), double(bf16[1]), 5.0 * std::sqrt(2.0 * n * q * (1 - q)) + 1.0);
}

}  // namespace
}  // namespace aegis
