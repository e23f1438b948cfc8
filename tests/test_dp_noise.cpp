// DP-SGD noise and update (privacy/noise.h, kernels/dp_update.h) and secure mode
// (privacy/secure_rng.h): the distribution of the Philox noise (mean, sd, Kolmogorov–Smirnov
// against Φ over 2^20 draws), no noise shared between steps or parameters, the fused kernel
// against "noise, add, divide by qN, plain optimizer" done separately, the canary, empty batches,
// validation, CUDA-vs-CPU equality (skipped without a GPU), and the secure samplers (exact
// Bernoulli, discrete Gaussian against its pmf, grid outputs, OS keys).
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kernels/random.h"
#include "privacy/noise.h"
#include "privacy/secure_rng.h"
#include "runtime/ops.h"
#include "core/philox.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
using privacy::DpNoiseOptions;
using privacy::DpOptimizer;
using testing::random_tensor;

// ---- statistics ------------------------------------------------------------------------------

struct Moments {
  double mean, sd;
};
Moments moments(const std::vector<double>& x) {
  double s = 0.0, s2 = 0.0;
  for (double v : x) s += v;
  const double mean = s / static_cast<double>(x.size());
  for (double v : x) s2 += (v - mean) * (v - mean);
  return {mean, std::sqrt(s2 / static_cast<double>(x.size() - 1))};
}

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const Moments ma = moments(a), mb = moments(b);
  double c = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) c += (a[i] - ma.mean) * (b[i] - mb.mean);
  return c / (static_cast<double>(a.size() - 1) * ma.sd * mb.sd);
}

// sup_x |F_n(x) − Φ(x)| of the sample.
double ks_statistic_normal(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const double n = static_cast<double>(x.size());
  double d = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double cdf = 0.5 * std::erfc(-x[i] / std::sqrt(2.0));
    d = std::max({d, static_cast<double>(i + 1) / n - cdf, cdf - static_cast<double>(i) / n});
  }
  return d;
}

// Upper α = 0.001 point of χ²(df) by the Wilson–Hilferty approximation (z_0.999 = 3.0902),
// within 1% of the exact quantile for df ≥ 3.
double chi2_critical_001(int df) {
  const double k = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - k + 3.0902 * std::sqrt(k), 3.0);
}

std::size_t count_equal(const std::vector<double>& a, const std::vector<double>& b) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += a[i] == b[i];
  return n;
}

// ---- fixtures --------------------------------------------------------------------------------

DpNoiseOptions noise_options(double sigma, double clip, double expected_batch, std::uint64_t seed) {
  DpNoiseOptions o;
  o.noise_multiplier = sigma;
  o.max_grad_norm = clip;
  o.expected_batch_size = expected_batch;
  o.seed = seed;
  return o;
}

// Odd sizes, one element, and one buffer above the CPU kernels' threading thresholds.
const std::vector<Shape> kShapes = {{1}, {7, 13}, {257, 131}};

std::vector<Var> make_params(std::uint64_t seed, const std::vector<Shape>& shapes = kShapes,
                             Device device = Device::cpu()) {
  std::vector<Var> params;
  for (std::size_t i = 0; i < shapes.size(); ++i)
    params.emplace_back(random_tensor(shapes[i], seed + i).to(device), true);
  return params;
}

void set_grads(std::vector<Var>& params, int step, std::uint64_t seed) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    params[i].zero_grad();
    params[i].accumulate_grad_owned(
        random_tensor(params[i].shape(), seed + 1000 * step + i, -3.0f, 3.0f).to(params[i].device()));
  }
}

// Records every noisy gradient the optimizer hands to its update, per parameter.
struct Recorder {
  std::vector<std::vector<double>> last;
  void attach(DpOptimizer& opt) {
    last.assign(opt.parameters().size(), {});
    opt.set_update_observer([this](std::size_t i, const Tensor& g) { last[i] = testing::to_double(g); });
  }
};

// ---- the Philox noise ------------------------------------------------------------------------

TEST(DpNoise, IsStandardNormalOverAMillionDraws) {
  // σC = 1.2 on a zero clipped sum with q·N = 1: the noisy gradient is σC·z.
  const std::int64_t n = 1 << 20;
  std::vector<Var> params{Var(Tensor::zeros({n}), true)};
  DpOptimizer opt(params, nn::SgdOptions{1.0f}, noise_options(1.5, 0.8, 1.0, 2024));
  Recorder rec;
  rec.attach(opt);
  opt.step();
  std::vector<double> z = rec.last[0];
  const double std_dev = opt.noise_stddev();
  for (double& v : z) v /= std_dev;
  const Moments m = moments(z);
  // Sample mean of n standard normals has sd 1/sqrt(n): 5 sd ≈ 4.9e-3, fixed seed.
  EXPECT_LT(std::fabs(m.mean), 5.0 / std::sqrt(static_cast<double>(n)));
  // Sample sd of n normals has sd ≈ 1/sqrt(2n): 5 of them ≈ 3.5e-3.
  EXPECT_LT(std::fabs(m.sd - 1.0), 5.0 / std::sqrt(2.0 * static_cast<double>(n)));
  // Kolmogorov–Smirnov against Φ: the α = 0.001 critical value is sqrt(ln(2/α)/2)/sqrt(n) = 1.9495/sqrt(n).
  EXPECT_LT(ks_statistic_normal(z), 1.9495 / std::sqrt(static_cast<double>(n)));
  // SGD with lr 1 from p = 0: p = −g̃ exactly.
  const std::vector<double> p = testing::to_double(params[0].value());
  for (std::int64_t i = 0; i < n; i += 4099) ASSERT_EQ(p[i], -rec.last[0][i]);
}

TEST(DpNoise, NoTwoStepsShareNoise) {
  const std::int64_t n = 100000;
  std::vector<Var> params{Var(Tensor::zeros({n}), true)};
  DpOptimizer opt(params, nn::SgdOptions{0.1f}, noise_options(1.0, 1.0, 1.0, 7));
  Recorder rec;
  rec.attach(opt);
  std::vector<std::vector<double>> noise;
  for (std::uint32_t t = 0; t < 3; ++t) {
    EXPECT_EQ(opt.noise_step(), t);
    opt.zero_grad();  // a missing gradient is a zero clipped sum: the update is pure noise
    opt.step();
    noise.push_back(rec.last[0]);
  }
  EXPECT_EQ(opt.noise_step(), 3u);
  for (int t = 0; t + 1 < 3; ++t) {
    // Independent draws: the sample correlation is ~N(0, 1/n); 5 sd ≈ 0.016.
    EXPECT_LT(std::fabs(correlation(noise[t], noise[t + 1])), 5.0 / std::sqrt(static_cast<double>(n)));
    // Two independent float normals coincide with probability ~5e-8 each: ≈ 0.005 expected here.
    EXPECT_LE(count_equal(noise[t], noise[t + 1]), 2u);
  }
  // A step that throws still spends its noise step.
  params[0].zero_grad();
  params[0].accumulate_grad_owned(Tensor::full({n}, std::nan("")));
  EXPECT_THROW(opt.step(), NumericError);
  EXPECT_EQ(opt.noise_step(), 4u);
}

TEST(DpNoise, ResumedRunContinuesTheNoiseSequence) {
  // first_step = 1 draws at its first step what a fresh run draws at its second.
  std::vector<Var> a{Var(Tensor::zeros({1000}), true)}, b{Var(Tensor::zeros({1000}), true)};
  DpNoiseOptions resumed = noise_options(1.0, 1.0, 1.0, 9);
  resumed.first_step = 1;
  DpOptimizer fresh(a, nn::SgdOptions{0.1f}, noise_options(1.0, 1.0, 1.0, 9)), later(b, nn::SgdOptions{0.1f}, resumed);
  Recorder ra, rb;
  ra.attach(fresh);
  rb.attach(later);
  fresh.step();
  fresh.step();
  later.step();
  EXPECT_EQ(ra.last[0], rb.last[0]);
}

TEST(DpNoise, NoTwoParametersShareNoise) {
  const std::vector<Shape> shapes = {{300, 301}, {300, 301}};
  std::vector<Var> params = make_params(5, shapes);
  DpNoiseOptions o = noise_options(0.9, 2.0, 1.0, 11);
  DpOptimizer opt(params, nn::SgdOptions{0.1f}, o);
  Recorder rec;
  rec.attach(opt);
  opt.zero_grad();
  opt.step();
  const double n = 300.0 * 301.0;
  // Independent draws: correlation ~N(0, 1/n), 5 sd ≈ 0.017; coincidences expected ≈ 0.005.
  EXPECT_LT(std::fabs(correlation(rec.last[0], rec.last[1])), 5.0 / std::sqrt(n));
  EXPECT_LE(count_equal(rec.last[0], rec.last[1]), 2u);
  // The layout: parameter 1 draws the element indices right after parameter 0's.
  EXPECT_EQ(opt.noise_offset(0), 0u);
  EXPECT_EQ(opt.noise_offset(1), static_cast<std::uint64_t>(300 * 301));
  for (std::size_t i = 0; i < 2; ++i) {
    const Tensor alone = privacy::noisy_gradient(Tensor::zeros(shapes[i]), o, 0, opt.noise_offset(i));
    EXPECT_EQ(testing::to_double(alone), rec.last[i]) << "parameter " << i;
  }
}

// ---- fused = separate ------------------------------------------------------------------------

// One separate reference step: noise from kernels::cpu::fill_normal, (s + c + noise)/qN in float,
// then the plain optimizer's own step().
void reference_step(nn::Optimizer& ref, const DpOptimizer& dp, const std::vector<Tensor>& sums,
                    const std::vector<Tensor>& canary, std::uint32_t step) {
  std::vector<Var> params = ref.parameters();
  const DpNoiseOptions& o = dp.noise_options();
  const float qn = static_cast<float>(o.expected_batch_size);
  for (std::size_t i = 0; i < params.size(); ++i) {
    const std::int64_t n = sums[i].numel();
    std::vector<float> noise(static_cast<std::size_t>(n));
    kernels::cpu::fill_normal(noise.data(), n, philox::Key{o.seed, philox::kPurposeDpNoise, step}, dp.noise_offset(i),
                              0.0f, dp.noise_stddev());
    std::vector<float> g = sums[i].to_vector<float>();
    for (std::size_t k = 0; k < g.size(); ++k) {
      const float c = canary.empty() || !canary[i].defined() ? 0.0f : canary[i].to_vector<float>()[k];
      g[k] = (g[k] + c + noise[k]) / qn;
    }
    params[i].zero_grad();
    params[i].accumulate_grad_owned(Tensor::from_vector(g, sums[i].shape()));
  }
  ref.step();
}

void run_fused_vs_separate(DpOptimizer& dp, nn::Optimizer& ref, double rtol, double atol) {
  std::vector<Var> params = dp.parameters();
  for (std::uint32_t t = 0; t < 3; ++t) {
    set_grads(params, static_cast<int>(t), 77);
    std::vector<Tensor> sums, canary;
    for (const Var& p : params) sums.push_back(p.grad().clone());
    if (t == 1) {  // a canary on the middle parameter at the middle step
      canary.assign(params.size(), Tensor());
      canary[1] = random_tensor(params[1].shape(), 99, -0.5f, 0.5f);
      dp.set_canary(canary);
    }
    dp.step();
    reference_step(ref, dp, sums, canary, t);
  }
  for (std::size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(testing::all_close(params[i].value(), ref.parameters()[i].value(), rtol, atol))
        << dp.describe() << " parameter " << i;
}

TEST(DpOptimizer, FusedSgdEqualsNoiseThenPlainSgdExactly) {
  const nn::SgdOptions cases[] = {
      {0.05f, 0.0f, 0.0f, false}, {0.05f, 0.9f, 0.0f, false}, {0.05f, 0.9f, 1e-2f, true}, {0.05f, 0.0f, 0.1f, false}};
  for (const nn::SgdOptions& c : cases) {
    DpOptimizer dp(make_params(3), c, noise_options(1.1, 0.7, 37.5, 123));
    nn::SGD ref(make_params(3), c);
    // Same float expressions in the same order (kernels/optim_math.h): bit-for-bit equal.
    run_fused_vs_separate(dp, ref, 0.0, 0.0);
  }
}

TEST(DpOptimizer, FusedAdamMatchesNoiseThenPlainAdam) {
  for (bool decoupled : {false, true}) {
    const nn::AdamOptions c{1e-2f, 0.9f, 0.999f, 1e-8f, 0.05f, decoupled};
    DpOptimizer dp(make_params(4), c, noise_options(0.8, 1.3, 12.0, 321));
    nn::Adam ref(make_params(4), c);
    // The same shared formula makes this exact too; the tolerance (a few float ulps of O(1)
    // values) only allows a compiler to contract the two loops' arithmetic differently.
    run_fused_vs_separate(dp, ref, 1e-6, 1e-7);
  }
}

TEST(DpOptimizer, CanaryEqualsAddingItToTheClippedSumForOneStep) {
  std::vector<Var> a = make_params(8), b = make_params(8);
  DpOptimizer with_canary(a, nn::SgdOptions{0.1f, 0.9f}, noise_options(1.0, 1.0, 10.0, 5));
  DpOptimizer folded(b, nn::SgdOptions{0.1f, 0.9f}, noise_options(1.0, 1.0, 10.0, 5));
  Recorder ra, rb;
  ra.attach(with_canary);
  rb.attach(folded);
  std::vector<Tensor> canary;
  for (const Var& p : a) canary.push_back(random_tensor(p.shape(), 55, -1.0f, 1.0f));
  set_grads(a, 0, 1);
  set_grads(b, 0, 1);
  for (std::size_t i = 0; i < b.size(); ++i) {
    const Tensor sum = ops::add(b[i].grad(), canary[i]);
    b[i].zero_grad();
    b[i].accumulate_grad_owned(sum);
  }
  with_canary.set_canary(canary);
  with_canary.step();
  folded.step();
  EXPECT_EQ(ra.last, rb.last);
  // The canary was consumed: the next step sees the plain clipped sums in both.
  set_grads(a, 1, 1);
  set_grads(b, 1, 1);
  with_canary.step();
  folded.step();
  EXPECT_EQ(ra.last, rb.last);
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(testing::to_double(a[i].value()), testing::to_double(b[i].value()));
}

TEST(DpOptimizer, BadCanaryOrGradientModifiesNothing) {
  std::vector<Var> params = make_params(12);
  DpOptimizer opt(params, nn::SgdOptions{0.1f}, noise_options(1.0, 1.0, 4.0, 1));
  EXPECT_THROW(opt.set_canary({Tensor()}), InvalidArgument);  // one entry for three parameters
  const std::vector<double> before = testing::to_double(params[2].value());
  set_grads(params, 0, 3);
  opt.set_canary({Tensor(), Tensor::zeros({2, 2}), Tensor()});
  EXPECT_THROW(opt.step(), ShapeError);
  opt.set_canary({Tensor(), Tensor(), Tensor::full(kShapes[2], std::nan(""))});
  EXPECT_THROW(opt.step(), NumericError);
  EXPECT_EQ(testing::to_double(params[2].value()), before);
  EXPECT_EQ(opt.steps(), 0);
}

TEST(DpOptimizer, EmptyBatchStillReleasesNoiseOnEveryParameter) {
  std::vector<Var> params = make_params(13);
  std::vector<std::vector<double>> before;
  for (const Var& p : params) before.push_back(testing::to_double(p.value()));
  DpOptimizer opt(params, nn::AdamOptions{1e-3f}, noise_options(1.0, 1.0, 64.0, 2));
  opt.step();  // no parameter has a gradient: an empty Poisson batch
  for (std::size_t i = 0; i < params.size(); ++i) {
    ASSERT_TRUE(params[i].has_grad());
    EXPECT_EQ(ops::sum(params[i].grad()), 0.0);
    EXPECT_EQ(count_equal(before[i], testing::to_double(params[i].value())), 0u) << "parameter " << i;
  }
  EXPECT_EQ(opt.steps(), 1);
}

TEST(DpOptimizer, InvalidOptionsNameTheValue) {
  struct Case {
    DpNoiseOptions o;
    std::string needle;
  };
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  const Case cases[] = {{noise_options(0.0, 1.0, 8.0, 0), "noise_multiplier 0"},
                        {noise_options(-1.0, 1.0, 8.0, 0), "noise_multiplier -1"},
                        {noise_options(nan, 1.0, 8.0, 0), "noise_multiplier nan"},
                        {noise_options(inf, 1.0, 8.0, 0), "noise_multiplier inf"},
                        {noise_options(1.0, 0.0, 8.0, 0), "max_grad_norm 0"},
                        {noise_options(1.0, -0.5, 8.0, 0), "max_grad_norm -0.5"},
                        {noise_options(1.0, inf, 8.0, 0), "max_grad_norm inf"},
                        {noise_options(1.0, 1.0, 0.0, 0), "expected_batch_size 0"},
                        {noise_options(1.0, 1.0, -3.0, 0), "expected_batch_size -3"},
                        {noise_options(1.0, 1.0, nan, 0), "expected_batch_size nan"}};
  for (const Case& c : cases) {
    try {
      DpOptimizer opt(make_params(1), nn::SgdOptions{0.1f}, c.o);
      ADD_FAILURE() << "accepted " << c.needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(c.needle), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(privacy::make_dp_optimizer(nn::parse_optimizer("rmsprop"), make_params(1), 0.1f, noise_options(1, 1, 1, 0)), InvalidArgument);
  EXPECT_THROW(DpOptimizer(make_params(1), nn::SgdOptions{0.1f, 1.5f}, noise_options(1, 1, 1, 0)), InvalidArgument);
}

TEST(DpOptimizer, WrapsAPlainOptimizer) {
  std::vector<Var> params = make_params(14);
  nn::SGD sgd(params, nn::SgdOptions{0.2f, 0.9f, 1e-3f, true});
  auto dp = privacy::make_dp_optimizer(sgd, noise_options(1.0, 1.0, 16.0, 0));
  EXPECT_NE(dp->describe().find("SGD(lr=0.2, momentum=0.9, weight_decay=0.001, nesterov=true)"), std::string::npos)
      << dp->describe();
  EXPECT_EQ(dp->parameters().size(), params.size());
  auto adamw = privacy::make_dp_optimizer(nn::parse_optimizer("adamw"), make_params(14), 1e-3f, noise_options(1.0, 1.0, 16.0, 0));
  EXPECT_NE(adamw->describe().find("AdamW"), std::string::npos);
  EXPECT_EQ(dp->effective_noise_multiplier(), 1.0);
}

TEST(DpOptimizer, CpuAndCudaDrawTheSameNoise) {
  AEGIS_REQUIRE_GPU();
  for (bool adam : {false, true}) {
    SCOPED_TRACE(adam ? "adam" : "sgd");
    const DpNoiseOptions o = noise_options(1.3, 0.9, 20.0, 4242);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      std::vector<Var> params = make_params(15, kShapes, run.device());
      std::unique_ptr<DpOptimizer> opt =
          adam ? std::make_unique<DpOptimizer>(params, nn::AdamOptions{1e-2f}, o)
               : std::make_unique<DpOptimizer>(params, nn::SgdOptions{0.1f, 0.9f, 1e-3f, true}, o);
      Recorder rec;
      rec.attach(*opt);
      for (int t = 0; t < 2; ++t) {
        set_grads(params, t, 6);
        opt->step();
        for (std::size_t i = 0; i < params.size(); ++i)
          // Box–Muller in double on both; CUDA's log/sin/cos differ from glibc's by ≤ 1 ulp of
          // double, which survives the rounding to float only rarely and then by 1 float ulp.
          run.check("noise, step " + std::to_string(t) + ", parameter " + std::to_string(i),
                    testing::flat_tensor(rec.last[i]),
                    {2e-7, 1e-9});
      }
      for (std::size_t i = 0; i < params.size(); ++i)
        // nvcc contracts the optimizer's multiply-adds into FMAs: a few ulps over two steps.
        run.check("parameter " + std::to_string(i), params[i].value(), {1e-5, 1e-6});
    }));
  }
}

// ---- secure mode -----------------------------------------------------------------------------

TEST(SecureRng, StreamsAreKeyedByPurposeStepAndStream) {
  const privacy::SecureKey key = privacy::SecureKey::from_os(), other = privacy::SecureKey::from_os();
  auto words = [](const privacy::SecureKey& k, std::uint32_t purpose, std::uint64_t step, std::uint64_t stream) {
    privacy::SecureStream s(k, purpose, step, stream);
    std::vector<std::uint64_t> w;
    for (int i = 0; i < 40; ++i) w.push_back(s.next_u64());  // crosses a buffer refill (32 words)
    return w;
  };
  const auto base = words(key, 3, 10, 0);
  EXPECT_EQ(words(key, 3, 10, 0), base);
  EXPECT_NE(words(key, 4, 10, 0), base);
  EXPECT_NE(words(key, 3, 11, 0), base);
  EXPECT_NE(words(key, 3, 10, 1), base);
  EXPECT_NE(words(other, 3, 10, 0), base);
}

TEST(SecureRng, ExactBernoullis) {
  privacy::SecureStream rng(privacy::SecureKey::from_os(), 0, 0, 0);
  const int n = 100000;
  auto frequency = [&](auto draw) {
    int hits = 0;
    for (int i = 0; i < n; ++i) hits += draw() ? 1 : 0;
    return hits / static_cast<double>(n);
  };
  // Each frequency is a mean of n Bernoulli(p): 5 sd = 5·sqrt(p(1 − p)/n) ≤ 0.0079 (unseeded: OS key).
  auto bound = [&](double p) { return 5.0 * std::sqrt(p * (1.0 - p) / n); };
  EXPECT_NEAR(frequency([&] { return rng.bernoulli(0.3); }), 0.3, bound(0.3));
  EXPECT_NEAR(frequency([&] { return rng.bernoulli_exp(1, 1); }), std::exp(-1.0), bound(std::exp(-1.0)));
  EXPECT_NEAR(frequency([&] { return rng.bernoulli_exp(5, 2); }), std::exp(-2.5), bound(std::exp(-2.5)));
  EXPECT_NEAR(frequency([&] { return rng.uniform_below(6) == 5; }), 1.0 / 6.0, bound(1.0 / 6.0));
  EXPECT_EQ(frequency([&] { return rng.bernoulli(1.0); }), 1.0);
  EXPECT_EQ(frequency([&] { return rng.bernoulli(0.0); }), 0.0);
  EXPECT_EQ(frequency([&] { return rng.bernoulli(std::ldexp(1.0, -70)); }), 0.0);  // P(any) ≈ 8e-17
  EXPECT_EQ(frequency([&] { return rng.bernoulli_exp(0, 7); }), 1.0);
  EXPECT_THROW(rng.bernoulli(1.5), InvalidArgument);
}

TEST(SecureRng, DiscreteGaussianFollowsItsPmf) {
  privacy::SecureStream rng(privacy::SecureKey::from_os(), 0, 1, 0);
  const int n = 100000;
  for (std::uint64_t sigma_sq : {1ULL, 4ULL, 10ULL}) {
    // pmf(x) = exp(−x²/(2σ²)) / Σ_y exp(−y²/(2σ²)); |y| ≤ 200 holds all mass to double precision.
    const double var = static_cast<double>(sigma_sq);
    double z = 0.0;
    for (int x = -200; x <= 200; ++x) z += std::exp(-x * x / (2.0 * var));
    auto pmf = [&](int x) { return std::exp(-x * x / (2.0 * var)) / z; };
    // Bins x = −w … w plus one pooled two-sided tail |x| > w, with w the largest cut whose tail
    // still expects ≥ 5 counts (the usual validity rule of the χ² approximation).
    int w = 200;
    auto tail = [&](int cut) {
      double t = 0.0;
      for (int x = cut + 1; x <= 200; ++x) t += 2.0 * pmf(x);
      return t;
    };
    while (tail(w) * n < 5.0) --w;
    std::vector<double> observed(2 * w + 2, 0.0);
    for (int i = 0; i < n; ++i) {
      const std::int64_t x = privacy::discrete_gaussian(rng, sigma_sq);
      observed[x < -w || x > w ? 2 * w + 1 : static_cast<std::size_t>(x + w)] += 1.0;
    }
    double chi2 = 0.0;
    for (int b = 0; b <= 2 * w + 1; ++b) {
      const double expected = n * (b == 2 * w + 1 ? tail(w) : pmf(b - w));
      ASSERT_GE(expected, 5.0) << "bin " << b;
      chi2 += (observed[b] - expected) * (observed[b] - expected) / expected;
    }
    // Goodness of fit to the exact pmf, α = 0.001 (OS key, so a fresh sample every run).
    EXPECT_LT(chi2, chi2_critical_001(2 * w + 1)) << "sigma_sq " << sigma_sq << ", " << 2 * w + 2 << " bins";
  }
  EXPECT_THROW(privacy::discrete_gaussian(rng, 0), InvalidArgument);
}

TEST(SecureMode, RunsDifferAreFiniteAndHaveTheRightMoments) {
  const std::int64_t n = 100000;
  DpNoiseOptions o = noise_options(1.7, 0.6, 1.0, 1);
  o.secure = true;
  std::vector<Var> a{Var(Tensor::zeros({n}), true)}, b{Var(Tensor::zeros({n}), true)};
  DpOptimizer first(a, nn::SgdOptions{1.0f}, o), second(b, nn::SgdOptions{1.0f}, o);  // same seed, OS keys
  Recorder ra, rb;
  ra.attach(first);
  rb.attach(second);
  first.step();
  second.step();
  // Independent runs: coincidences of two ~N(0, 1) floats are ~5e-8 each, ≈ 0.005 expected.
  EXPECT_LE(count_equal(ra.last[0], rb.last[0]), 2u);
  std::vector<double> z = ra.last[0];
  for (double& v : z) {
    ASSERT_TRUE(std::isfinite(v));
    v /= 1.7 * 0.6;
  }
  const Moments m = moments(z);
  // OS-keyed, so not a fixed seed: 5 sd bounds fail with probability ~6e-7 per run.
  EXPECT_LT(std::fabs(m.mean), 5.0 / std::sqrt(static_cast<double>(n)));            // ≈ 0.016
  EXPECT_LT(std::fabs(m.sd - 1.0), 5.0 / std::sqrt(2.0 * static_cast<double>(n)));  // ≈ 0.011
  // σ_eff = sqrt(S)/(C/γ + sqrt(d)) lies between σ/(1 + σ·sqrt(d)·2^−25) and σ.
  const double eff = first.effective_noise_multiplier();
  EXPECT_LE(eff, 1.7);
  EXPECT_GE(eff, 1.7 / (1.0 + 1.7 * std::sqrt(static_cast<double>(n)) * std::ldexp(1.0, -25)));
}

TEST(SecureMode, ReleasesTheRoundedInputPlusAnIntegerGaussian) {
  // σ = 3, C = 0.5 ⇒ σC = 1.5, γ = 2^(⌈log2 1.5⌉ − 26) = 2^−25 and S = ⌈(1.5·2^25)²⌉ (+ margin).
  const privacy::SecureGrid grid = privacy::SecureGrid::make(3.0, 0.5);
  EXPECT_EQ(grid.grid, std::ldexp(1.0, -25));
  const double s_exact = std::ldexp(1.5, 25) * std::ldexp(1.5, 25);
  EXPECT_GE(static_cast<double>(grid.variance), s_exact);
  EXPECT_LE(static_cast<double>(grid.variance), s_exact + 8.0);
  const std::int64_t n = 100000;
  const std::vector<float> in = random_tensor({n}, 17, -3.0f, 3.0f).to_vector<float>();
  const privacy::SecureKey key = privacy::SecureKey::from_os();
  std::vector<std::int64_t> m(n), again(n);
  privacy::secure_noisy_integers(in.data(), m.data(), n, grid, key, philox::kPurposeDpNoise, 4, 1);
  privacy::secure_noisy_integers(in.data(), again.data(), n, grid, key, philox::kPurposeDpNoise, 4, 1);
  EXPECT_EQ(m, again);  // the same key, step and stream give the same keystream
  std::vector<double> k(n), v(n);
  const double sd = std::sqrt(static_cast<double>(grid.variance));
  for (std::int64_t i = 0; i < n; ++i) {
    k[i] = static_cast<double>(m[i] - std::llround(in[i] / grid.grid)) / sd;
    v[i] = in[i];
  }
  const Moments km = moments(k);
  // OS-keyed, so not a fixed seed: each 5-sd bound fails with probability ~6e-7 per run.
  EXPECT_LT(std::fabs(km.mean), 5.0 / std::sqrt(static_cast<double>(n)));
  EXPECT_LT(std::fabs(km.sd - 1.0), 5.0 / std::sqrt(2.0 * static_cast<double>(n)));
  EXPECT_LT(std::fabs(correlation(k, v)), 5.0 / std::sqrt(static_cast<double>(n)));  // noise ignores the input
  // The float output is the post-processing float(γ·m) of those integers.
  std::vector<float> out(n);
  privacy::secure_noisy_values(in.data(), out.data(), n, grid, key, philox::kPurposeDpNoise, 4, 1);
  for (std::int64_t i = 0; i < n; i += 997)
    ASSERT_EQ(out[i], static_cast<float>(grid.grid * static_cast<double>(m[i])));
}

TEST(SecureMode, InputBeyondTheGridThrowsBeforeAnyUpdate) {
  std::vector<Var> params = make_params(16);
  DpNoiseOptions o = noise_options(1.0, 1.0, 8.0, 0);
  o.secure = true;
  DpOptimizer opt(params, nn::AdamOptions{1e-3f}, o);
  const std::vector<double> before = testing::to_double(params[0].value());
  set_grads(params, 0, 8);
  params[2].zero_grad();
  params[2].accumulate_grad_owned(Tensor::full(kShapes[2], 1e9));  // > 2^52·γ = 2^26 ≈ 6.7e7
  EXPECT_THROW(opt.step(), NumericError);
  EXPECT_EQ(testing::to_double(params[0].value()), before);
  EXPECT_EQ(opt.noise_step(), 1u);
  set_grads(params, 1, 8);
  opt.step();
  for (const Var& p : params) EXPECT_EQ(ops::count_nonfinite(p.value()), 0);
}

TEST(SecureMode, RunsWithGpuParameters) {
  AEGIS_REQUIRE_GPU();
  std::vector<Var> params = make_params(18, kShapes, Device::cuda());
  DpNoiseOptions o = noise_options(1.0, 1.0, 1.0, 0);
  o.secure = true;
  DpOptimizer opt(params, nn::SgdOptions{0.5f, 0.9f}, o);
  Recorder rec;
  rec.attach(opt);
  set_grads(params, 0, 9);
  opt.step();
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(params[i].value().is_cuda());
    EXPECT_EQ(ops::count_nonfinite(params[i].value()), 0);
    EXPECT_EQ(rec.last[i].size(), static_cast<std::size_t>(params[i].value().numel()));
  }
}

}  // namespace
}  // namespace aegis
