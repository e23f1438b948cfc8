// Poisson sampling and batches for DP-SGD (privacy/sampling.h): batch sizes against
// Binomial(N, q) by a χ² goodness-of-fit test, per-example inclusion rates, reproducibility per
// (seed, step), empty batches, the secure sampler, fixed-capacity masked batches and their
// splitting, the non-Poisson shuffled batches, and validation.
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "privacy/noise.h"
#include "privacy/sampling.h"
#include "runtime/ops.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using privacy::poisson_sample;

// Upper α = 0.001 point of χ²(df) by the Wilson–Hilferty approximation (z_0.999 = 3.0902),
// within 1% of the exact quantile for df ≥ 3.
double chi2_critical_001(int df) {
  const double k = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - k + 3.0902 * std::sqrt(k), 3.0);
}

double binomial_pmf(std::int64_t n, double q, std::int64_t k) {
  const double log_choose = std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0);
  return std::exp(log_choose + k * std::log(q) + (n - k) * std::log1p(-q));
}

// χ² statistic and its degrees of freedom for observed sizes against Binomial(n, q): sizes are
// binned individually, the two tails pooled until each pooled bin expects ≥ 5 counts.
std::pair<double, int> binomial_chi2(const std::vector<std::int64_t>& sizes, std::int64_t n, double q) {
  const double steps = static_cast<double>(sizes.size());
  std::vector<double> expected(static_cast<std::size_t>(n + 1)), observed(static_cast<std::size_t>(n + 1), 0.0);
  for (std::int64_t k = 0; k <= n; ++k) expected[k] = steps * binomial_pmf(n, q, k);
  for (std::int64_t s : sizes) observed[static_cast<std::size_t>(s)] += 1.0;
  std::int64_t lo = 0, hi = n;
  double lo_exp = expected[0], lo_obs = observed[0], hi_exp = expected[n], hi_obs = observed[n];
  while (lo_exp < 5.0) {
    ++lo;
    lo_exp += expected[lo];
    lo_obs += observed[lo];
  }
  while (hi_exp < 5.0) {
    --hi;
    hi_exp += expected[hi];
    hi_obs += observed[hi];
  }
  double chi2 = (lo_obs - lo_exp) * (lo_obs - lo_exp) / lo_exp + (hi_obs - hi_exp) * (hi_obs - hi_exp) / hi_exp;
  int bins = 2;
  for (std::int64_t k = lo + 1; k < hi; ++k) {
    chi2 += (observed[k] - expected[k]) * (observed[k] - expected[k]) / expected[k];
    ++bins;
  }
  return {chi2, bins - 1};
}

nn::Dataset small_dataset(std::int64_t n) {
  nn::Dataset ds;
  ds.name = "tiny";
  ds.images = testing::random_tensor({n, 1, 2, 3}, 5, 0.0f, 1.0f);
  std::vector<std::int32_t> labels;
  for (std::int64_t i = 0; i < n; ++i) labels.push_back(static_cast<std::int32_t>(1 + i % 9));
  ds.labels = Tensor::from_vector(labels, {n});
  ds.num_classes = 10;
  return ds;
}

// ---- Poisson sampling ------------------------------------------------------------------------

TEST(PoissonSample, BatchSizesFollowTheBinomial) {
  const std::int64_t n = 500;
  const double q = 0.03;
  const int steps = 4000;
  std::vector<std::int64_t> sizes;
  std::vector<double> inclusions(n, 0.0);
  for (std::uint32_t t = 0; t < static_cast<std::uint32_t>(steps); ++t) {
    const auto batch = poisson_sample(n, q, 31, t);
    ASSERT_TRUE(std::is_sorted(batch.begin(), batch.end()));
    ASSERT_EQ(std::set<std::int64_t>(batch.begin(), batch.end()).size(), batch.size());  // no repeats
    sizes.push_back(static_cast<std::int64_t>(batch.size()));
    for (std::int64_t i : batch) inclusions[i] += 1.0;
  }
  const auto [chi2, df] = binomial_chi2(sizes, n, q);
  // Goodness of fit at α = 0.001, fixed seed (df ≈ 20 with mean 15, sd 3.8).
  EXPECT_LT(chi2, chi2_critical_001(df)) << df << " degrees of freedom";
  // Each example's inclusion count is Binomial(steps, q): mean 120, sd 10.8. Across 500 examples
  // the mean count has sd 0.48: 5 sd = 2.4.
  double total = 0.0;
  for (double c : inclusions) total += c;
  EXPECT_NEAR(total / n, steps * q, 5.0 * std::sqrt(steps * q * (1.0 - q) / n));
  // The first and last examples are not treated differently (each within 5 sd of 120).
  EXPECT_NEAR(inclusions.front(), steps * q, 5.0 * std::sqrt(steps * q * (1.0 - q)));
  EXPECT_NEAR(inclusions.back(), steps * q, 5.0 * std::sqrt(steps * q * (1.0 - q)));
}

TEST(PoissonSample, SameSeedAndStepGiveTheSameBatch) {
  const auto a = poisson_sample(10000, 0.01, 77, 12);
  EXPECT_EQ(poisson_sample(10000, 0.01, 77, 12), a);
  EXPECT_NE(poisson_sample(10000, 0.01, 77, 13), a);
  EXPECT_NE(poisson_sample(10000, 0.01, 78, 12), a);
  const privacy::PoissonSampler sampler(10000, 0.01, 77);
  EXPECT_EQ(sampler.sample(12), a);
  EXPECT_DOUBLE_EQ(sampler.expected_batch_size(), 100.0);
}

TEST(PoissonSample, RateOneTakesEveryExampleAndZeroExamplesGiveNothing) {
  const auto all = poisson_sample(37, 1.0, 1, 0);
  ASSERT_EQ(all.size(), 37u);
  for (std::int64_t i = 0; i < 37; ++i) EXPECT_EQ(all[i], i);
  EXPECT_TRUE(poisson_sample(0, 0.5, 1, 0).empty());
}

TEST(PoissonSample, EmptyBatchesOccurForTinyRatesAndAreHandled) {
  // N = 100, q = 1e-3: P(empty) = 0.999^100 ≈ 0.905, so ~270 of 300 steps are empty.
  int empty = 0;
  for (std::uint32_t t = 0; t < 300; ++t) empty += poisson_sample(100, 1e-3, 3, t).empty() ? 1 : 0;
  EXPECT_GT(empty, 200);
  EXPECT_LT(empty, 300);
  // An empty sample is still one (empty, all-padding) batch to process.
  const nn::Dataset ds = small_dataset(100);
  const auto chunks = privacy::split_into_chunks({}, 7);
  ASSERT_EQ(chunks.size(), 1u);
  const privacy::MaskedBatch b = privacy::gather_masked(ds, chunks[0], 7, Device::cpu());
  EXPECT_EQ(b.size, 0);
  EXPECT_EQ(b.images.shape(), (Shape{7, 1, 2, 3}));
  EXPECT_EQ(ops::sum(b.mask), 0.0);
  EXPECT_EQ(ops::sum(b.images), 0.0);
  // And the optimizer step of an empty batch is pure noise on every parameter.
  std::vector<autograd::Var> params{autograd::Var(Tensor::zeros({4}), true)};
  privacy::DpNoiseOptions o;
  o.noise_multiplier = 1.0;
  o.max_grad_norm = 1.0;
  o.expected_batch_size = 0.1;
  privacy::DpOptimizer opt(params, nn::SgdOptions{0.1f}, o);
  opt.step();
  for (float v : params[0].value().to_vector<float>()) EXPECT_NE(v, 0.0f);
}

TEST(PoissonSample, SecureSamplerIsUnseededAndHasTheRightRate) {
  const privacy::PoissonSampler a(1000, 0.1, 5, true), b(1000, 0.1, 5, true);  // same seed, OS keys
  std::int64_t total = 0;
  int same = 0;
  for (std::uint32_t t = 0; t < 200; ++t) {
    const auto sa = a.sample(t);
    total += static_cast<std::int64_t>(sa.size());
    same += sa == b.sample(t) ? 1 : 0;
    EXPECT_EQ(a.sample(t), sa);  // the same key and step give the same batch
  }
  // Two independent samples of 1000 examples at q = 0.1 coincide with probability ~1e-60.
  EXPECT_EQ(same, 0);
  // 200 steps × 1000 examples at q = 0.1: mean 20000, sd 134; OS-keyed, 5 sd bound.
  EXPECT_NEAR(static_cast<double>(total), 20000.0, 5.0 * std::sqrt(200.0 * 1000.0 * 0.1 * 0.9));
  const privacy::SecureKey key = privacy::SecureKey::from_os();
  EXPECT_EQ(privacy::poisson_sample_secure(50, 1.0, key, 0).size(), 50u);
}

TEST(PoissonSample, RejectsRatesOutsideTheUnitInterval) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (double q : {0.0, -0.1, 1.5, nan}) {
    try {
      poisson_sample(10, q, 0, 0);
      ADD_FAILURE() << "accepted q = " << q;
    } catch (const InvalidArgument& e) {
      std::ostringstream v;
      v << "q = " << q;
      EXPECT_NE(std::string(e.what()).find(v.str()), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(poisson_sample(-1, 0.5, 0, 0), InvalidArgument);
  EXPECT_THROW(privacy::PoissonSampler(10, 0.0, 0), InvalidArgument);
}

// ---- masked batches --------------------------------------------------------------------------

TEST(MaskedBatch, CapacityIsMeanPlusSixStandardDeviations) {
  EXPECT_EQ(privacy::masked_capacity(100, 0.5), 80);               // 50 + 6·5
  EXPECT_EQ(privacy::masked_capacity(1000, 0.001), 7);             // 1 + 6·0.9995 = 6.997
  EXPECT_EQ(privacy::masked_capacity(60000, 256.0 / 60000), 352);  // 256 + 6·15.97 = 351.8
  EXPECT_EQ(privacy::masked_capacity(10, 0.9), 10);                // 14.7, clamped to N
  EXPECT_EQ(privacy::masked_capacity(10, 1.0), 10);
  EXPECT_EQ(privacy::masked_capacity(0, 0.5), 1);
}

TEST(MaskedBatch, GathersRowsLabelsAndMask) {
  const nn::Dataset ds = small_dataset(20);
  const std::vector<std::int64_t> idx = {3, 0, 19, 7};
  const privacy::MaskedBatch b = privacy::gather_masked(ds, idx, 6, Device::cpu());
  EXPECT_EQ(b.size, 4);
  ASSERT_EQ(b.images.shape(), (Shape{6, 1, 2, 3}));
  const std::vector<float> img = b.images.to_vector<float>(), src = ds.images.to_vector<float>();
  const std::vector<std::int32_t> labels = b.labels.to_vector<std::int32_t>();
  const std::vector<float> mask = b.mask.to_vector<float>();
  for (std::size_t r = 0; r < 6; ++r) {
    for (std::size_t k = 0; k < 6; ++k) {
      const float expected = r < idx.size() ? src[static_cast<std::size_t>(idx[r]) * 6 + k] : 0.0f;
      EXPECT_EQ(img[r * 6 + k], expected) << "row " << r;
    }
    EXPECT_EQ(labels[r], r < idx.size() ? 1 + idx[r] % 9 : 0);
    EXPECT_EQ(mask[r], r < idx.size() ? 1.0f : 0.0f);
  }
  EXPECT_THROW(privacy::gather_masked(ds, idx, 3, Device::cpu()), InvalidArgument);   // over capacity
  EXPECT_THROW(privacy::gather_masked(ds, {20}, 3, Device::cpu()), InvalidArgument);  // out of range
  EXPECT_THROW(privacy::gather_masked(ds, {-1}, 3, Device::cpu()), InvalidArgument);
  EXPECT_THROW(privacy::gather_masked(ds, {}, 0, Device::cpu()), InvalidArgument);
}

TEST(MaskedBatch, OversizedSamplesAreSplitNeverTruncated) {
  std::vector<std::int64_t> idx(23);
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int64_t>(2 * i);
  const auto chunks = privacy::split_into_chunks(idx, 10);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].size(), 10u);
  EXPECT_EQ(chunks[2].size(), 3u);
  std::vector<std::int64_t> joined;
  for (const auto& c : chunks) joined.insert(joined.end(), c.begin(), c.end());
  EXPECT_EQ(joined, idx);
  const nn::Dataset ds = small_dataset(50);
  std::int64_t rows = 0;
  for (const auto& c : chunks) rows += privacy::gather_masked(ds, c, 10, Device::cpu()).size;
  EXPECT_EQ(rows, 23);
}

TEST(MaskedBatch, CopiesToTheGpu) {
  AEGIS_REQUIRE_GPU();
  const nn::Dataset ds = small_dataset(20);
  // The same rows, copied: exact on both devices.
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    const privacy::MaskedBatch b = privacy::gather_masked(ds, {1, 2, 3}, 5, run.device());
    EXPECT_EQ(b.images.device(), run.device());
    EXPECT_EQ(b.labels.device(), run.device());
    EXPECT_EQ(b.mask.device(), run.device());
    EXPECT_EQ(ops::sum(b.mask.to(Device::cpu())), 3.0);
    run.check("images", b.images, testing::kExact);
    run.check("labels", b.labels, testing::kExact);
    run.check("mask", b.mask, testing::kExact);
  }));
}

// ---- shuffled batches (not Poisson) ----------------------------------------------------------

TEST(ShuffledBatches, FixedSizeDisjointAndReproducible) {
  const auto batches = privacy::shuffled_batches(103, 10, 9, 2);
  ASSERT_EQ(batches.size(), 10u);  // the last 3 examples of the order sit this epoch out
  std::set<std::int64_t> seen;
  for (const auto& b : batches) {
    EXPECT_EQ(b.size(), 10u);
    for (std::int64_t i : b) {
      EXPECT_TRUE(i >= 0 && i < 103);
      EXPECT_TRUE(seen.insert(i).second) << "index " << i << " twice";
    }
  }
  const auto order = nn::shuffled_order(103, 9, 2);
  EXPECT_TRUE(std::equal(batches[0].begin(), batches[0].end(), order.begin()));
  EXPECT_EQ(privacy::shuffled_batches(103, 10, 9, 2), batches);
  EXPECT_NE(privacy::shuffled_batches(103, 10, 9, 3), batches);
  EXPECT_THROW(privacy::shuffled_batches(10, 0, 0, 0), InvalidArgument);
  EXPECT_THROW(privacy::shuffled_batches(10, 11, 0, 0), InvalidArgument);
}

}  // namespace
}  // namespace aegis
