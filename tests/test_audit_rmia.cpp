// RMIA's scores (privacy/audit_mia.h, rmia_scores) on hand-computed numbers and on synthetic
// models, LiRA's augmented queries (lira_scores with several views), and both inside the audit
// on a small pool of the bundled digits set.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"
#include "nn/data/dataset.h"
#include "privacy/audit_mia.h"
#include "privacy/audit_mia_query.h"
#include "support/testing.h"

namespace aegis::privacy {
namespace {

std::vector<double> logs(std::vector<double> p) {
  for (double& x : p) x = std::log(x);
  return p;
}

TEST(AuditRmia, ScoresMatchHandComputedShares) {
  // Two reference models, two pool examples, three population samples (probabilities of the true
  // label). Model 0 trained on x0, model 1 on x1.
  const std::vector<std::vector<double>> prob = {logs({0.8, 0.2}), logs({0.4, 0.6})};
  const std::vector<std::vector<bool>> in = {{true, false}, {false, true}};
  const std::vector<double> target = logs({0.9, 0.3});
  const std::vector<std::vector<double>> population = {logs({0.5, 0.1, 0.7}), logs({0.5, 0.3, 0.7})};
  const std::vector<double> target_population = logs({0.6, 0.2, 0.35});
  // Online: Pr(x) = (0.6, 0.4), so Pr(x|θ)/Pr(x) = (1.5, 0.75); Pr(z) = (0.5, 0.2, 0.7), so the
  // population ratios are (1.2, 1.0, 0.5). x0 beats all three z at γ = 1, x1 only the last.
  // Offline (a = 0.3): Pr(x) = ½(1.3·Pr_OUT(x) + 0.7) = (0.61, 0.48) with Pr_OUT = (0.4, 0.2),
  // ratios (1.475, 0.625); Pr(z) = (0.675, 0.48, 0.805), ratios (0.889, 0.417, 0.435): x1 beats two.
  const std::vector<std::vector<double>> s = rmia_scores(prob, in, target, population, target_population);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_DOUBLE_EQ(s[0][0], 1.0);
  EXPECT_DOUBLE_EQ(s[0][1], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(s[1][0], 1.0);
  EXPECT_DOUBLE_EQ(s[1][1], 2.0 / 3.0);
  // γ = 2: x0 needs a population ratio ≤ 0.75 (only 0.5 online), x1 one ≤ 0.375 (none).
  RmiaOptions two;
  two.gamma = 2.0;
  const std::vector<std::vector<double>> g = rmia_scores(prob, in, target, population, target_population, two);
  EXPECT_DOUBLE_EQ(g[0][0], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(g[0][1], 0.0);
  // a = 1 makes the offline Pr(x) the OUT mean itself: x1's ratio 1.5 against (1.2, 1.0, 0.5).
  RmiaOptions one;
  one.offline_a = 1.0;
  EXPECT_DOUBLE_EQ(rmia_scores(prob, in, target, population, target_population, one)[1][1], 1.0);

  RmiaOptions bad;
  bad.gamma = 0.0;
  EXPECT_THROW(rmia_scores(prob, in, target, population, target_population, bad), InvalidArgument);
  bad = RmiaOptions{};
  bad.offline_a = 1.5;
  EXPECT_THROW(rmia_scores(prob, in, target, population, target_population, bad), InvalidArgument);
  EXPECT_THROW(rmia_scores(prob, in, target, population, {}), InvalidArgument);
  EXPECT_THROW(rmia_scores(prob, {{true, true}, {true, true}}, target, population, target_population),
               InvalidArgument);  // offline: x0 and x1 in every model
}

// log Pr(y|x) of a model on n examples: sigmoid(b_i + gap·member + noise), per-example offsets b_i
// spread far wider than the membership gap.
struct Synthetic {
  std::vector<std::vector<double>> ref, ref_population;
  std::vector<std::vector<bool>> in;
  std::vector<double> base, base_population;
};

double log_sigmoid(double t) {
  return -std::log1p(std::exp(-t));
}

Synthetic synthetic(std::size_t n, std::size_t m, std::size_t k_models, double gap, std::mt19937& rng) {
  std::normal_distribution<double> normal;
  Synthetic s;
  for (std::size_t i = 0; i < n; ++i) s.base.push_back(3.0 * normal(rng));
  for (std::size_t j = 0; j < m; ++j) s.base_population.push_back(3.0 * normal(rng));
  s.ref.assign(k_models, std::vector<double>(n));
  s.in.assign(k_models, std::vector<bool>(n));
  s.ref_population.assign(k_models, std::vector<double>(m));
  for (std::size_t k = 0; k < k_models; ++k) {
    for (std::size_t i = 0; i < n; ++i) {
      s.in[k][i] = (k + i) % 2 == 0;
      s.ref[k][i] = log_sigmoid(s.base[i] + (s.in[k][i] ? gap : 0.0) + 0.2 * normal(rng));
    }
    for (std::size_t j = 0; j < m; ++j) s.ref_population[k][j] = log_sigmoid(s.base_population[j] + 0.2 * normal(rng));
  }
  return s;
}

TEST(AuditRmia, SeparatesMembersAndReadsChanceWhenTheTargetIsItsReferences) {
  std::mt19937 rng(7);
  std::normal_distribution<double> normal;
  const std::size_t n = 2000, m = 500, k_models = 8;
  const Synthetic s = synthetic(n, m, k_models, 1.0, rng);
  std::vector<bool> member(n);
  std::vector<double> target(n), target_population(m);
  for (std::size_t i = 0; i < n; ++i) {
    member[i] = (i * 7919) % 3 == 0;
    target[i] = log_sigmoid(s.base[i] + (member[i] ? 1.0 : 0.0) + 0.2 * normal(rng));
  }
  for (std::size_t j = 0; j < m; ++j) target_population[j] = log_sigmoid(s.base_population[j] + 0.2 * normal(rng));
  const std::vector<std::vector<double>> scores = rmia_scores(s.ref, s.in, target, s.ref_population, target_population);
  // Per example the gap is 5σ of the noise while the offsets spread 3: the ratio to Pr(x) removes
  // the offset, the raw probability cannot.
  EXPECT_GT(roc_curve(scores[0], member).auc, 0.95);
  EXPECT_GT(roc_curve(scores[1], member).auc, roc_curve(target, member).auc);
  EXPECT_LT(roc_curve(target, member).auc, 0.65);

  // A target identical to every reference model: Pr(x|θ) = Pr(x) and Pr(z|θ) = Pr(z), every LR is
  // 1 ≥ γ, every online score 1 and the AUC exactly ½. Offline, the ratio is a function of Pr(x|θ)
  // alone, which carries no membership here: chance within the noise of 2000 examples (σ ≈ 0.014).
  std::vector<std::vector<double>> same(k_models, target), same_population(k_models, target_population);
  std::vector<std::vector<bool>> half_in(k_models, std::vector<bool>(n));
  for (std::size_t k = 0; k < k_models; ++k)
    for (std::size_t i = 0; i < n; ++i) half_in[k][i] = (k + i) % 2 == 0;
  const std::vector<std::vector<double>> flat = rmia_scores(same, half_in, target, same_population, target_population);
  for (double x : flat[0]) ASSERT_EQ(x, 1.0);
  EXPECT_EQ(roc_curve(flat[0], member).auc, 0.5);
  std::vector<double> unrelated(n);
  for (std::size_t i = 0; i < n; ++i) unrelated[i] = log_sigmoid(3.0 * normal(rng));
  const std::vector<std::vector<double>> chance = rmia_scores(std::vector<std::vector<double>>(k_models, unrelated),
                                                              half_in, unrelated, same_population, target_population);
  EXPECT_NEAR(roc_curve(chance[0], member).auc, 0.5, 0.06);
  EXPECT_NEAR(roc_curve(chance[1], member).auc, 0.5, 0.06);
}

TEST(AuditRmia, FittedSlopeIsTheBestOnTheLeaveOneOutTargets) {
  // The fit against a brute-force recomputation: every reference model in turn as the target,
  // the others as references, the mean offline AUC at each a of the grid.
  std::mt19937 rng(11);
  const std::size_t n = 300, m = 200, k_models = 6;
  const Synthetic s = synthetic(n, m, k_models, 0.7, rng);
  std::vector<double> mean_auc;
  for (int step = 0; step <= 20; ++step) {
    RmiaOptions o;
    o.offline_a = step / 20.0;
    double total = 0.0;
    for (std::size_t t = 0; t < k_models; ++t) {
      std::vector<std::vector<double>> refs, refs_population;
      std::vector<std::vector<bool>> refs_in;
      for (std::size_t k = 0; k < k_models; ++k)
        if (k != t)
          refs.push_back(s.ref[k]), refs_in.push_back(s.in[k]), refs_population.push_back(s.ref_population[k]);
      total += roc_curve(rmia_scores(refs, refs_in, s.ref[t], refs_population, s.ref_population[t], o)[1], s.in[t]).auc;
    }
    mean_auc.push_back(total / k_models);
  }
  const auto best = std::max_element(mean_auc.begin(), mean_auc.end()) - mean_auc.begin();
  const double a = fit_rmia_offline_a(s.ref, s.in, s.ref_population);
  EXPECT_DOUBLE_EQ(a, best / 20.0);
  RecordProperty("fitted_a", std::to_string(a));
  // The grid's AUCs differ (a matters here), so the fit is a real choice.
  EXPECT_GT(*std::max_element(mean_auc.begin(), mean_auc.end()) - *std::min_element(mean_auc.begin(), mean_auc.end()),
            1e-3);
  EXPECT_THROW(fit_rmia_offline_a({s.ref[0], s.ref[1]}, {s.in[0], s.in[1]}, {s.ref_population[0], s.ref_population[1]}),
               InvalidArgument);
}

TEST(AuditLira, ViewsAddTheirLikelihoodRatios) {
  // Two views of 50 examples in 8 models: the two-view scores are the one-view scores of each view
  // added (the diagonal Gaussian), and a view repeated doubles them; one view is the old score.
  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  const std::size_t n = 50, k_models = 8;
  std::vector<std::vector<double>> view0(k_models, std::vector<double>(n)), view1 = view0, both = view0;
  std::vector<std::vector<bool>> in(k_models, std::vector<bool>(n));
  for (std::size_t k = 0; k < k_models; ++k)
    for (std::size_t i = 0; i < n; ++i) {
      in[k][i] = (k + i) % 2 == 0;
      view0[k][i] = normal(rng) + (in[k][i] ? 1.0 : 0.0);
      view1[k][i] = 0.5 * view0[k][i] + normal(rng);
    }
  std::vector<double> t0(n), t1(n);
  for (std::size_t i = 0; i < n; ++i) t0[i] = normal(rng), t1[i] = normal(rng);
  std::vector<std::vector<double>> stacked(k_models), doubled(k_models);
  for (std::size_t k = 0; k < k_models; ++k) {
    stacked[k] = view0[k];
    stacked[k].insert(stacked[k].end(), view1[k].begin(), view1[k].end());
    doubled[k] = view0[k];
    doubled[k].insert(doubled[k].end(), view0[k].begin(), view0[k].end());
  }
  std::vector<double> t_stacked = t0, t_doubled = t0;
  t_stacked.insert(t_stacked.end(), t1.begin(), t1.end());
  t_doubled.insert(t_doubled.end(), t0.begin(), t0.end());
  const auto a = lira_scores(view0, in, t0, 1), b = lira_scores(view1, in, t1, 1);
  const auto sum = lira_scores(stacked, in, t_stacked, 2), twice = lira_scores(doubled, in, t_doubled, 2);
  for (std::size_t v = 0; v < 4; ++v)
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(sum[v][i], a[v][i] + b[v][i]) << v << " " << i;
      ASSERT_EQ(twice[v][i], 2.0 * a[v][i]) << v << " " << i;
    }
  EXPECT_THROW(lira_scores(view0, in, t_stacked, 3), InvalidArgument);  // 100 statistics are not 3 views of n
}

TEST(AuditLira, AugmentedViewsMirrorAndShift) {
  nn::Dataset d;
  d.name = "tiny";
  // One 1-channel 2x3 image: rows (1 2 3), (4 5 6).
  d.images = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {1, 1, 2, 3});
  d.labels = Tensor::from_vector(std::vector<std::int32_t>{0}, {1});
  d.num_classes = 2;
  const auto pixels = [&](std::int64_t view) {
    return audit_detail::augmented_view(d, view).images.to_vector<float>();
  };
  EXPECT_EQ(pixels(0), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(pixels(1), (std::vector<float>{1, 1, 2, 4, 4, 5}));   // one pixel right, the left column repeats
  EXPECT_EQ(pixels(3), (std::vector<float>{1, 2, 3, 1, 2, 3}));   // one pixel down
  EXPECT_EQ(pixels(9), (std::vector<float>{3, 2, 1, 6, 5, 4}));   // mirrored
  EXPECT_EQ(pixels(10), (std::vector<float>{3, 3, 2, 6, 6, 5}));  // one pixel right, then mirrored
  EXPECT_THROW(audit_detail::augmented_view(d, 18), InvalidArgument);
}

}  // namespace
}  // namespace aegis::privacy
