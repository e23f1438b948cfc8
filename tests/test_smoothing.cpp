// Randomized smoothing: the exact statistics (Clopper-Pearson, binomial test, Φ⁻¹) against
// published values, the noise generator against a double-precision Box-Muller and the normal
// distribution, the fused noisy batch against its definition, and CERTIFY/PREDICT against the
// closed form of a smoothed linear classifier (Cohen et al. 2019, §3.2 and Thm 1). The CUDA
// backend against the CPU and its reduced-precision modes: test_smoothing_cuda.cpp.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "certify/smoothing.h"
#include "certify/stats.h"
#include "kernels/smoothing.h"
#include "nn/data/dataset.h"
#include "nn/layers.h"
#include "nn/train.h"
#include "nn/zoo.h"
#include "support/testing.h"

namespace aegis {
namespace {

using certify::SmoothedClassifier;
using certify::SmoothingOptions;

// ---- exact statistics --------------------------------------------------------------------------

// Reference values from scipy 1.17 (scipy.stats.beta.ppf(α, k, n−k+1), norm.ppf, binomtest).
TEST(SmoothingStats, ClopperPearsonMatchesBetaQuantile) {
  struct Case {
    std::int64_t k, n;
    double alpha, expected;
  };
  const Case cases[] = {
      {1, 10, 0.05, 0.005116196891823701},         {5, 10, 0.05, 0.2224411010081294},
      {9, 10, 0.001, 0.37627691091117454},         {990, 1000, 0.001, 0.9760361871553114},
      {99990, 100000, 0.001, 0.9997586773435911},  {50, 100, 0.001, 0.34479800642531777},
      {1, 100000, 0.001, 1.000500328578529e-08},   {500000, 1000000, 0.001, 0.4984543879253213},
      {999999, 1000000, 0.001, 0.9999907666245347}, {3, 5, 0.3, 0.38981835053095837},
  };
  // lgamma of arguments near 1e6 carries ~1e-9 relative error into the prefactor of I_x.
  for (const Case& c : cases)
    EXPECT_NEAR(certify::clopper_pearson_lower(c.k, c.n, c.alpha), c.expected, 1e-9 * c.expected + 1e-15)
        << "k=" << c.k << " n=" << c.n;
}

TEST(SmoothingStats, ClopperPearsonEdges) {
  EXPECT_EQ(certify::clopper_pearson_lower(0, 100, 0.001), 0.0);
  EXPECT_DOUBLE_EQ(certify::clopper_pearson_lower(100, 100, 0.001), std::pow(0.001, 0.01));
  EXPECT_DOUBLE_EQ(certify::clopper_pearson_lower(1, 1, 0.05), 0.05);
  EXPECT_EQ(certify::clopper_pearson_upper(100, 100, 0.001), 1.0);
  EXPECT_DOUBLE_EQ(certify::clopper_pearson_upper(0, 100, 0.001), 1.0 - std::pow(0.001, 0.01));
  // The bound is conservative: I_p̲(k, n−k+1) ≤ α.
  for (std::int64_t k : {1, 7, 500, 999}) {
    const double p = certify::clopper_pearson_lower(k, 1000, 0.001);
    EXPECT_LE(certify::regularized_beta(p, static_cast<double>(k), static_cast<double>(1000 - k + 1)), 0.001);
  }
  EXPECT_THROW(certify::clopper_pearson_lower(5, 4, 0.01), InvalidArgument);
  EXPECT_THROW(certify::clopper_pearson_lower(-1, 4, 0.01), InvalidArgument);
  EXPECT_THROW(certify::clopper_pearson_lower(1, 4, 0.0), InvalidArgument);
  EXPECT_THROW(certify::clopper_pearson_lower(1, 4, 1.0), InvalidArgument);
  EXPECT_THROW(certify::clopper_pearson_lower(0, 0, 0.1), InvalidArgument);
}

TEST(SmoothingStats, NormalQuantile) {
  const double cases[][2] = {{1e-300, -37.0470962993612}, {1e-20, -9.262340089798409}, {1e-10, -6.361340902404056},
                             {0.001, -3.090232306167813}, {0.3, -0.5244005127080409}, {0.5, 0.0},
                             {0.7, 0.5244005127080407},   {0.975, 1.959963984540054}, {0.999, 3.090232306167813},
                             {1 - 1e-12, 7.0344869100478356}};
  for (const auto& c : cases) EXPECT_NEAR(certify::normal_quantile(c[0]), c[1], 2e-15 * (1 + std::fabs(c[1]))) << c[0];
  EXPECT_THROW(certify::normal_quantile(0.0), InvalidArgument);
  EXPECT_THROW(certify::normal_quantile(1.0), InvalidArgument);
  EXPECT_THROW(certify::normal_quantile(std::nan("")), InvalidArgument);
}

TEST(SmoothingStats, BinomialTestTwoSided) {
  const double cases[][3] = {{60, 100, 0.05688793364098089}, {50, 100, 1.0},      {7, 10, 0.34375},
                             {0, 10, 0.001953125},           {10, 10, 0.001953125}, {520, 1000, 0.2174482932041415},
                             {5000, 9800, 0.04440414879984631}, {3, 4, 0.625}};
  for (const auto& c : cases)
    EXPECT_NEAR(certify::binomial_test_two_sided(static_cast<std::int64_t>(c[0]), static_cast<std::int64_t>(c[1])), c[2],
                1e-10 * c[2])  // lgamma of arguments near 10⁴ carries ~1e-11 relative error
        << c[0] << "/" << c[1];
  EXPECT_EQ(certify::binomial_test_two_sided(0, 0), 1.0);
  EXPECT_THROW(certify::binomial_test_two_sided(5, 4), InvalidArgument);
}

// ---- the noise generator -------------------------------------------------------------------------

TEST(SmoothingNoise, LogMatchesLibmOverTheWholeRange) {
  // u1 takes values in [2⁻⁴⁹, 1]; float log to within 4 ulp of the rounded result.
  for (double e = -65.0; e <= 0.0; e += 0.0137) {
    const float u = static_cast<float>(std::exp2(e));
    const double expected = std::log(static_cast<double>(u));
    const double got = kernels::smoothing_detail::log_positive(u);
    EXPECT_NEAR(got, expected, 4.8e-7 * std::fabs(expected) + 1e-9) << "u=" << u;
  }
  EXPECT_EQ(kernels::smoothing_detail::log_positive(1.0f), 0.0f);
}

TEST(SmoothingNoise, PairsMatchDoublePrecisionBoxMuller) {
  const philox::Key key{77, philox::kPurposeSmoothing, 3};
  for (std::uint64_t pair = 0; pair < 20000; ++pair) {
    const philox::U32x4 r = philox::block(key, pair);
    // u1 as the generator rounds it to float: the float quantization of u1 near 1 is part of the
    // draw (it bounds the smallest nonzero radius), not an error of the transform checked here.
    const float u1f = static_cast<float>(r.v[0] >> 8) * 5.9604644775390625e-08f +
                      (static_cast<float>(r.v[1] >> 8) + 0.5f) * 3.552713678800501e-15f;
    const double u1 = u1f;
    const double u2 = static_cast<double>(r.v[2] >> 8) * std::ldexp(1.0, -24);
    const double radius = std::sqrt(-2.0 * std::log(u1));
    float z0, z1;
    kernels::smoothing_normal_pair(key, pair, z0, z1);
    // float rounding of ln, √ and the angle: a few float ulps of the radius (≤ 8.2).
    EXPECT_NEAR(z0, radius * std::cos(2 * M_PI * u2), 2e-6 * (1.0 + radius)) << pair;
    EXPECT_NEAR(z1, radius * std::sin(2 * M_PI * u2), 2e-6 * (1.0 + radius)) << pair;
    EXPECT_EQ(kernels::smoothing_normal(key, 2 * pair + 1), z1);
  }
}

TEST(SmoothingNoise, MomentsAndTailOfOneMillionDraws) {
  const philox::Key key{2024, philox::kPurposeSmoothing, 0};
  const std::int64_t n = 1000000;
  double sum = 0, sum2 = 0, sum4 = 0, max_abs = 0;
  std::int64_t beyond2 = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double z = kernels::smoothing_normal(key, static_cast<std::uint64_t>(i));
    sum += z;
    sum2 += z * z;
    sum4 += z * z * z * z;
    beyond2 += std::fabs(z) > 2.0;
    max_abs = std::max(max_abs, std::fabs(z));
  }
  const double mean = sum / n, var = sum2 / n - mean * mean, kurt = sum4 / n;
  // 5 standard errors: mean SE 1/√n, variance SE √(2/n), E z⁴ = 3 with SE √(96/n), P[|z|>2] = 0.0455003.
  EXPECT_NEAR(mean, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(var, 1.0, 5.0 * std::sqrt(2.0 / n));
  EXPECT_NEAR(kurt, 3.0, 5.0 * std::sqrt(96.0 / n));
  const double p2 = 0.04550026389635842;
  EXPECT_NEAR(static_cast<double>(beyond2) / n, p2, 5.0 * std::sqrt(p2 * (1 - p2) / n));
  EXPECT_GT(max_abs, 4.0);  // the largest of 10⁶ normals is about 4.9
  EXPECT_LT(max_abs, 8.25);  // the largest radius the 48-bit u1 allows
}

TEST(SmoothingNoise, NoisyBatchFollowsItsDefinitionAcrossPairBoundaries) {
  // d odd: rows start on either half of a Philox pair; three inputs share the batch.
  const std::int64_t d = 7, samples = 5, m = 3;
  const Tensor x = testing::random_tensor({m, d}, 1, 0.0f, 1.0f);
  const std::vector<std::int64_t> ids = {4, 9, 1000};
  kernels::SmoothingBatch b;
  b.row_start = 2;
  b.rows = 11;
  b.samples = samples;
  b.d = d;
  b.seed = 31;
  b.sigma = 0.5f;
  std::vector<float> out(static_cast<std::size_t>(b.rows * d));
  kernels::cpu::noisy_batch(out.data(), x.data<float>(), ids.data(), b);
  for (std::int64_t r = 0; r < b.rows; ++r) {
    const std::int64_t g = b.row_start + r, slot = g / samples, sample = g % samples;
    const philox::Key key{b.seed, b.purpose, static_cast<std::uint32_t>(ids[static_cast<std::size_t>(slot)])};
    for (std::int64_t j = 0; j < d; ++j) {
      const float expected =
          x.data<float>()[slot * d + j] + b.sigma * kernels::smoothing_normal(key, static_cast<std::uint64_t>(sample * d + j));
      EXPECT_EQ(out[static_cast<std::size_t>(r * d + j)], expected) << "row " << r << " element " << j;
    }
  }
}

// ±inf logits (a float32 overflow; 16-bit overflow is an error before counting, see
// SmoothingOptions::precision) vote as IEEE orders them, the first maximum winning ties; NaN rows
// are reported instead of counted.
TEST(SmoothingCounts, InfiniteLogitsVoteAsIeeeOrdersThem) {
  const float inf = INFINITY;
  const std::vector<float> logits = {
      1.0f, inf,  2.0f,   // +inf wins: class 1
      -inf, 0.0f, -1.0f,  // 0 beats −inf: class 1
      inf,  inf,  5.0f,   // the first of two +inf: class 0
      -inf, -inf, -inf,   // all −inf: the first, class 0
      3.0f, NAN,  inf,    // NaN: not a vote
      -inf, 0.5f, -inf,   // class 1
  };
  kernels::SmoothingBatch b;
  b.rows = 6;
  b.samples = 6;
  b.d = 1;
  std::vector<std::int64_t> counts(3, 0);
  std::int64_t nan_rows = 4;  // accumulates: 4 from before, plus this batch's one NaN row
  kernels::cpu::count_argmax(counts.data(), logits.data(), b, 3, &nan_rows);
  EXPECT_EQ(nan_rows, 5);
  EXPECT_EQ(counts, (std::vector<std::int64_t>{2, 3, 0}));
  // The first copy number from a scalar (a replayed batch) instead of row_start: rows 0–5 of copy
  // numbers 6–11 belong to slot 1 when each input has 6 copies.
  const std::int64_t first_copy = 6;
  b.row_start_device = &first_copy;
  std::vector<std::int64_t> two_slots(6, 0);
  kernels::cpu::count_argmax(two_slots.data(), logits.data(), b, 3, &nan_rows);
  EXPECT_EQ(two_slots, (std::vector<std::int64_t>{0, 0, 0, 2, 3, 0}));
  std::int64_t scalar = 6;
  kernels::cpu::advance_row_start(&scalar, 128);
  EXPECT_EQ(scalar, 134);
}

// ---- the smoothed linear classifier --------------------------------------------------------------

// logits (0, w·x + b) on [N, 1, 4, 4] inputs: the base classifier predicts 1 iff w·x + b > 0, so
// the smoothed classifier's P[class 1] = Φ((w·x + b)/(σ‖w‖)) and its exact L2 radius is |w·x + b|/‖w‖.
struct LinearCase {
  std::shared_ptr<nn::Sequential> model;
  Tensor x;  // [1, 1, 4, 4]
  double margin;  // (w·x + b)/‖w‖, the signed distance to the boundary
};

LinearCase linear_case(double signed_distance) {
  const std::int64_t d = 16;
  const Tensor w = testing::random_tensor({d}, 5, -1.0f, 1.0f);
  LinearCase c;
  c.x = testing::random_tensor({1, 1, 4, 4}, 6, 0.3f, 0.7f);
  double norm = 0, wx = 0;
  for (std::int64_t j = 0; j < d; ++j) {
    norm += double(w.data<float>()[j]) * w.data<float>()[j];
    wx += double(w.data<float>()[j]) * c.x.data<float>()[j];
  }
  norm = std::sqrt(norm);
  const float bias = static_cast<float>(signed_distance * norm - wx);
  nn::InitRng rng(0);
  auto linear = std::make_shared<nn::Linear>(d, 2, rng);
  float* weight = linear->weight().value().data<float>();
  for (std::int64_t j = 0; j < d; ++j) {
    weight[j] = 0.0f;
    weight[d + j] = w.data<float>()[j];
  }
  linear->bias().value().data<float>()[0] = 0.0f;
  linear->bias().value().data<float>()[1] = bias;
  c.model = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Flatten>(), linear});
  c.margin = (wx + bias) / norm;
  return c;
}

// m copies of x, so that one call certifies m independent repetitions (keys differ by id).
Tensor repeat(const Tensor& x, std::int64_t m) {
  Tensor out = Tensor::empty({m, 1, 4, 4});
  for (std::int64_t i = 0; i < m; ++i) out.rows(i, i + 1).copy_from(x);
  return out;
}

std::vector<std::uint64_t> iota_ids(std::int64_t m, std::uint64_t first = 0) {
  std::vector<std::uint64_t> ids(static_cast<std::size_t>(m));
  for (std::int64_t i = 0; i < m; ++i) ids[static_cast<std::size_t>(i)] = first + static_cast<std::uint64_t>(i);
  return ids;
}

TEST(SmoothingLinear, CountsFollowTheClosedForm) {
  for (double distance : {-0.4, -0.1, 0.0, 0.15, 0.5}) {
    LinearCase c = linear_case(distance);
    SmoothedClassifier smoothed(*c.model, {1, 4, 4}, 2, Device::cpu());
    SmoothingOptions o;
    o.sigma = 0.5;
    o.batch = 4096;
    o.seed = 11;
    const std::int64_t n = 40000;
    const auto counts = smoothed.sample_counts(c.x, {0}, n, certify::SamplePhase::Estimation, o);
    const double p = certify::normal_cdf(c.margin / o.sigma);
    // 5 binomial standard errors.
    EXPECT_NEAR(static_cast<double>(counts[1]) / n, p, 5.0 * std::sqrt(p * (1 - p) / n) + 1e-9) << distance;
    EXPECT_EQ(counts[0] + counts[1], n);
  }
}

TEST(SmoothingLinear, CertifiedRadiusExceedsTheTrueRadiusAtMostAlphaOfTheTime) {
  LinearCase c = linear_case(0.3);  // p_A = Φ(0.6) ≈ 0.726 at σ = 0.5; the true radius is 0.3
  SmoothedClassifier smoothed(*c.model, {1, 4, 4}, 2, Device::cpu());
  SmoothingOptions o;
  o.sigma = 0.5;
  o.n0 = 50;
  o.n = 500;
  o.alpha = 0.05;
  o.batch = 5000;
  o.seed = 3;
  const std::int64_t reps = 400;
  const auto certs = smoothed.certify(repeat(c.x, reps), iota_ids(reps), o);
  std::int64_t violations = 0, certified = 0;
  double mean_p_hat = 0;
  for (const auto& cert : certs) {
    mean_p_hat += static_cast<double>(cert.count) / o.n / reps;
    if (cert.prediction < 0) continue;
    ++certified;
    if (cert.prediction != 1 || cert.radius > c.margin) ++violations;
  }
  // Thm 1 + Alg. 2: P[wrong class or radius > true radius] ≤ α. Expected ≤ 20 of 400; 34 lies
  // 3.2 binomial standard deviations above, so a correct implementation fails with probability < 0.1%.
  EXPECT_LE(violations, 34);
  EXPECT_GT(certified, reps * 9 / 10);  // p_A ≈ 0.726 ⇒ p̲A ≥ ½ almost always at n = 500
  const double p = certify::normal_cdf(0.6);
  EXPECT_NEAR(mean_p_hat, p, 5.0 * std::sqrt(p * (1 - p) / (o.n * reps)));
}

TEST(SmoothingLinear, PredictAbstainsOnTheBoundaryAndAnswersFarFromIt) {
  LinearCase edge = linear_case(0.0);
  SmoothedClassifier smoothed(*edge.model, {1, 4, 4}, 2, Device::cpu());
  SmoothingOptions o;
  o.sigma = 0.5;
  o.n = 400;
  o.alpha = 0.01;
  const std::int64_t reps = 300;
  std::int64_t answered = 0;
  for (const auto& p : smoothed.predict(repeat(edge.x, reps), iota_ids(reps), o)) answered += p.prediction >= 0;
  // Both classes have probability ½: PREDICT answers with probability ≤ α (Cohen et al. 2019, Prop. 1);
  // expected ≤ 3 of 300, and 12 is 5 standard deviations above.
  EXPECT_LE(answered, 12);
  LinearCase far = linear_case(1.5);
  SmoothedClassifier smoothed_far(*far.model, {1, 4, 4}, 2, Device::cpu());
  for (const auto& p : smoothed_far.predict(repeat(far.x, 20), iota_ids(20), o)) EXPECT_EQ(p.prediction, 1);
}

TEST(SmoothingLinear, CertificatesDependOnlyOnTheInputAndItsIndex) {
  LinearCase c = linear_case(0.05);
  SmoothedClassifier smoothed(*c.model, {1, 4, 4}, 2, Device::cpu());
  SmoothingOptions o;
  o.sigma = 0.25;
  o.n0 = 30;
  o.n = 300;
  o.alpha = 0.01;
  o.seed = 9;
  const Tensor x3 = repeat(c.x, 3);
  const std::vector<std::uint64_t> ids = {17, 4, 17000};
  o.batch = 7;  // batches that straddle inputs
  const auto packed = smoothed.certify(x3, ids, o);
  for (std::size_t i = 0; i < 3; ++i) {
    o.batch = 1000;
    const auto alone = smoothed.certify(c.x, {ids[i]}, o);
    EXPECT_EQ(alone[0].count, packed[i].count) << i;
    EXPECT_EQ(alone[0].selected, packed[i].selected) << i;
    EXPECT_EQ(alone[0].radius, packed[i].radius) << i;
  }
  EXPECT_NE(packed[0].count, packed[1].count);  // different indices draw different noise
  o.seed = 10;
  EXPECT_NE(smoothed.certify(c.x, {17}, o)[0].count, packed[0].count);
}

// On the CPU a batch of large inputs runs as chunks of rows (1 MiB of input each: 21 rows of
// 3×64×64). A batch of 105 then runs as the same forward passes as batches of 21 do, so the counts
// must be identical — the chunks' copy numbers, noise and counts are bookkept like batches.
TEST(SmoothingLinear, ChunkedBatchesCountLikeSeparateBatches) {
  const Shape input{3, 64, 64};
  const std::int64_t d = 3 * 64 * 64;
  nn::InitRng rng(3);
  auto model = std::make_shared<nn::Sequential>(
      std::vector<nn::ModulePtr>{std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(d, 3, rng)});
  SmoothedClassifier smoothed(*model, input, 3, Device::cpu());
  const Tensor x = testing::random_tensor({2, 3, 64, 64}, 12, 0.0f, 1.0f);
  SmoothingOptions o;
  o.sigma = 0.5;
  o.seed = 4;
  o.batch = 105;
  const auto chunked = smoothed.sample_counts(x, {5, 6}, 150, certify::SamplePhase::Estimation, o);
  o.batch = 21;
  const auto separate = smoothed.sample_counts(x, {5, 6}, 150, certify::SamplePhase::Estimation, o);
  EXPECT_EQ(chunked, separate);
  std::int64_t total = 0;
  for (auto c : chunked) total += c;
  EXPECT_EQ(total, 300);
}

TEST(SmoothingLinear, RejectsBadArguments) {
  LinearCase c = linear_case(0.2);
  SmoothedClassifier smoothed(*c.model, {1, 4, 4}, 2, Device::cpu());
  SmoothingOptions o;
  o.n = 10;
  auto with = [&](auto change) {
    SmoothingOptions bad = o;
    change(bad);
    return bad;
  };
  EXPECT_THROW(smoothed.certify(c.x, {0}, with([](SmoothingOptions& b) { b.sigma = 0; })), InvalidArgument);
  EXPECT_THROW(smoothed.certify(c.x, {0}, with([](SmoothingOptions& b) { b.sigma = -1; })), InvalidArgument);
  EXPECT_THROW(smoothed.certify(c.x, {0}, with([](SmoothingOptions& b) { b.sigma = std::nan(""); })), InvalidArgument);
  EXPECT_THROW(smoothed.certify(c.x, {0}, with([](SmoothingOptions& b) { b.alpha = 1; })), InvalidArgument);
  EXPECT_THROW(smoothed.certify(c.x, {0}, with([](SmoothingOptions& b) { b.n = 0; })), InvalidArgument);
  EXPECT_THROW(smoothed.certify(c.x, {0}, with([](SmoothingOptions& b) { b.batch = 0; })), InvalidArgument);
  for (MathPrecision p : {MathPrecision::Tf32, MathPrecision::Bf16, MathPrecision::Fp16})  // GPU only
    EXPECT_THROW(smoothed.certify(c.x, {0}, with([p](SmoothingOptions& b) { b.precision = p; })), DeviceError)
        << math_precision_name(p);
  EXPECT_THROW(smoothed.certify(c.x, {0, 1}, o), ShapeError);
  EXPECT_THROW(smoothed.certify(Tensor::zeros({1, 1, 4, 5}), {0}, o), ShapeError);
  Tensor nan_x = c.x.clone();
  nan_x.data<float>()[3] = std::nanf("");
  EXPECT_THROW(smoothed.certify(nan_x, {0}, o), NumericError);
  // A model whose logits are NaN must not become votes.
  c.model->children()[1].second->parameters()[1].mutable_value().data<float>()[1] = std::nanf("");
  EXPECT_THROW(smoothed.certify(c.x, {0}, o), NumericError);
}

// ---- Gaussian augmentation (Cohen et al. 2019, §4) ----------------------------------------------

TEST(SmoothingTraining, NoiseAugmentationIsReproducible) {
  const nn::DatasetSplit split = nn::load_dataset("digits", testing::source_dir() + "/data");
  auto train = [&](float sigma) {
    nn::ModelSpec spec{"mlp", {1, 8, 8}, 10, "", 1};
    auto model = nn::build_model(spec);
    nn::TrainOptions o;
    o.epochs = 2;
    o.batch_size = 64;
    o.lr = 0.01f;
    o.optimizer = nn::OptimizerKind::Adam;
    o.noise_sigma = sigma;
    nn::train_classifier(*model, split.train, o);
    return model;
  };
  auto noisy_a = train(0.25f), noisy_b = train(0.25f), clean = train(0.0f);
  const Tensor wa = noisy_a->parameters()[0].value(), wb = noisy_b->parameters()[0].value();
  EXPECT_TRUE(testing::all_close(wa, wb, 0, 0));  // same seed, same noise
  EXPECT_FALSE(testing::all_close(wa, clean->parameters()[0].value(), 0, 1e-6));
  nn::TrainOptions bad;
  bad.noise_sigma = -1.0f;
  EXPECT_THROW(nn::train_classifier(*clean, split.train, bad), InvalidArgument);
}

}  // namespace
}  // namespace aegis
