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
#include "core/cuda_backend.h"
#include "core/math_precision.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::SmoothedClassifier;
using certify::SmoothingOptions;

TEST(SmoothingCuda, SameNoiseAndCountsAsTheCpu) {
  AEGIS_REQUIRE_GPU();
  const std::int64_t d = 28 * 28, samples = 3, m = 2;
  const Tensor x = testing::random_tensor({m, d}, 8, 0.0f, 1.0f);
  const std::vector<std::int64_t> ids = {5, 77};
  kernels::SmoothingBatch b;
  b.rows = m * samples;
  b.samples = samples;
  b.d = d;
  b.seed = 12;
  b.sigma = 0.25f;
  std::vector<float> cpu_out(static_cast<std::size_t>(b.rows * d));
  kernels::cpu::noisy_batch(cpu_out.data(), x.data<float>(), ids.data(), b);
#if AEGIS_HAS_CUDA
  {
    const Tensor d_x = x.to(Device::cuda(0));
    Tensor d_out = Tensor::empty({b.rows, d}, DType::F32, Device::cuda(0));
    auto d_ids = Storage::allocate(ids.size() * 8, Device::cuda(0));
    cuda_backend::copy(d_ids->data(), ids.data(), ids.size() * 8, cuda_backend::Copy::HostToDevice);
    kernels::cuda::noisy_batch(d_out.data<float>(), d_x.data<float>(), static_cast<const std::int64_t*>(d_ids->data()),
                               b);
    const std::vector<float> gpu_out = d_out.to(Device::cpu()).to_vector<float>();
    // Every operation is IEEE-rounded in the same order on both devices: bit-identical noise.
    for (std::size_t i = 0; i < cpu_out.size(); ++i) ASSERT_EQ(cpu_out[i], gpu_out[i]) << "element " << i;
  }
#endif
  // Counts through the whole smoothed classifier on both devices.
  nn::ModelSpec spec{"cnn-fmnist", {1, 28, 28}, 10, "", 4};
  auto cpu_model = nn::build_model(spec);
  auto gpu_model = nn::build_model(spec);
  gpu_model->to(Device::cuda(0));
  const Tensor images = testing::random_tensor({m, 1, 28, 28}, 9, 0.0f, 1.0f);
  SmoothingOptions o;
  o.sigma = 0.25;
  o.batch = 256;
  SmoothedClassifier on_cpu(*cpu_model, {1, 28, 28}, 10, Device::cpu());
  SmoothedClassifier on_gpu(*gpu_model, {1, 28, 28}, 10, Device::cuda(0));
  const auto a = on_cpu.sample_counts(images, {5, 77}, 2000, certify::SamplePhase::Estimation, o);
  const auto g = on_gpu.sample_counts(images, {5, 77}, 2000, certify::SamplePhase::Estimation, o);
  // Identical noise; cuDNN and the CPU convolution round differently, which can flip an argmax whose
  // top two logits agree to ~1e-6: allow 0.5% of the samples per class.
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(double(a[i]), double(g[i]), 10.0) << i;
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
