// The audit statistics (privacy/audit_stats.h) against brute-force and analytic references:
// pairwise AUC, threshold-by-threshold ROC, binomial sums in long double, their inversion by
// bisection for Clopper–Pearson, and the one-run bound's closed form when every guess is right.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "certify/stats.h"
#include "core/error.h"
#include "privacy/audit_stats.h"

namespace aegis::privacy {
namespace {

// C(n, j) p^j (1 − p)^{n−j} in long double.
long double direct_pmf(std::int64_t j, std::int64_t n, long double p) {
  return std::exp(std::lgamma(static_cast<long double>(n + 1)) - std::lgamma(static_cast<long double>(j + 1)) -
                  std::lgamma(static_cast<long double>(n - j + 1)) + j * std::log(p) + (n - j) * std::log1p(-p));
}
// Σ_{j=k}^{n} of the pmf, term by term.
long double direct_tail(std::int64_t k, std::int64_t n, long double p) {
  long double sum = 0.0L;
  for (std::int64_t j = std::max<std::int64_t>(k, 0); j <= n; ++j) sum += direct_pmf(j, n, p);
  return sum;
}

// The p with f(p) = target for f increasing in p, by bisection.
double invert_increasing(const std::function<long double(long double)>& f, long double target) {
  long double lo = 0.0L, hi = 1.0L;
  for (int it = 0; it < 80; ++it) {  // 2^-80: below long double resolution near the answer
    const long double mid = 0.5L * (lo + hi);
    (f(mid) < target ? lo : hi) = mid;
  }
  return static_cast<double>(0.5L * (lo + hi));
}

// Random scores with many ties (rounded to a coarse grid) and members shifted upwards.
void make_scores(std::uint32_t seed, int n, std::vector<double>& scores, std::vector<bool>& members) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::bernoulli_distribution coin(0.4);
  scores.clear();
  members.clear();
  for (int i = 0; i < n; ++i) {
    const bool m = coin(rng);
    members.push_back(m);
    scores.push_back(std::round(4.0 * (normal(rng) + (m ? 0.7 : 0.0))) / 4.0);
  }
  members[0] = true;
  members[1] = false;
}

TEST(AuditStats, AucEqualsPairwiseCountWithTiesHalf) {
  for (int n : {2, 3, 17, 400}) {
    std::vector<double> s;
    std::vector<bool> m;
    make_scores(static_cast<std::uint32_t>(n), n, s, m);
    double wins = 0.0, pairs = 0.0;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        if (m[i] && !m[j]) {
          pairs += 1.0;
          wins += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
        }
    const RocCurve roc = roc_curve(s, m);
    EXPECT_NEAR(roc.auc, wins / pairs, 1e-12) << "n=" << n;  // exact up to rounding of one division
    EXPECT_EQ(roc.points.front().fpr, 0.0);
    EXPECT_EQ(roc.points.back().tpr, 1.0);
    EXPECT_EQ(roc.points.back().fpr, 1.0);
  }
}

TEST(AuditStats, RocPointsTprAtFprAndBalancedAccuracyMatchThresholdSweep) {
  std::vector<double> s;
  std::vector<bool> m;
  make_scores(7, 3000, s, m);
  const RocCurve roc = roc_curve(s, m);
  double best_bacc = 0.5, best_tpr_1 = 0.0, best_tpr_01 = 0.0;
  std::vector<double> thresholds(s);
  std::sort(thresholds.begin(), thresholds.end());
  thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());
  EXPECT_EQ(roc.points.size(), thresholds.size() + 1);  // one point per distinct score, plus (0, 0)
  for (double t : thresholds) {
    double tp = 0, fp = 0;
    for (std::size_t i = 0; i < s.size(); ++i)
      if (s[i] >= t) (m[i] ? tp : fp) += 1;
    const double tpr = tp / static_cast<double>(roc.positives), fpr = fp / static_cast<double>(roc.negatives);
    best_bacc = std::max(best_bacc, 0.5 * (tpr + 1.0 - fpr));
    if (fpr <= 0.01) best_tpr_1 = std::max(best_tpr_1, tpr);
    if (fpr <= 0.001) best_tpr_01 = std::max(best_tpr_01, tpr);
  }
  const AttackMetrics metrics = attack_metrics(roc);
  EXPECT_DOUBLE_EQ(metrics.balanced_accuracy, best_bacc);
  EXPECT_DOUBLE_EQ(metrics.tpr_at_1_fpr, best_tpr_1);
  EXPECT_DOUBLE_EQ(metrics.tpr_at_0_1_fpr, best_tpr_01);
  EXPECT_GT(metrics.tpr_at_1_fpr, 0.0);  // the grid has a top score bucket of members only
}

TEST(AuditStats, PerfectAndConstantScores) {
  const RocCurve perfect = roc_curve({0.1, 0.2, 0.9, 0.8}, {false, false, true, true});
  EXPECT_EQ(perfect.auc, 1.0);
  EXPECT_EQ(balanced_accuracy(perfect), 1.0);
  EXPECT_EQ(tpr_at_fpr(perfect, 0.0), 1.0);
  const RocCurve constant = roc_curve({3.0, 3.0, 3.0}, {true, false, false});
  EXPECT_EQ(constant.auc, 0.5);
  EXPECT_EQ(balanced_accuracy(constant), 0.5);
  EXPECT_EQ(tpr_at_fpr(constant, 0.5), 0.0);  // the only step jumps to FPR 1
  EXPECT_THROW(roc_curve({1.0, 2.0}, {true, true}), InvalidArgument);
  EXPECT_THROW(roc_curve({1.0, NAN}, {true, false}), InvalidArgument);
  EXPECT_THROW(roc_curve({1.0}, {true, false}), InvalidArgument);
}

TEST(AuditStats, BinomialTailEqualsDirectSum) {
  for (std::int64_t n : {1, 7, 60, 501})
    for (double p : {0.01, 0.5, 0.731, 0.999})
      for (std::int64_t k : {std::int64_t{0}, std::int64_t{1}, n / 3, n / 2 + 1, n}) {
        const double ref = static_cast<double>(direct_tail(k, n, p));
        // Continued fraction vs. a sum of ≤ 502 long-double terms: both near 1e-13 relative.
        EXPECT_NEAR(binomial_tail(k, n, p), ref, 1e-12 + 1e-9 * ref) << "k=" << k << " n=" << n << " p=" << p;
        // I_p(k, n − k + 1) by the continued fraction of certify/stats.h.
        if (k >= 1) {
          EXPECT_NEAR(binomial_tail(k, n, p), certify::regularized_beta(p, static_cast<double>(k), static_cast<double>(n - k + 1)),
                      1e-12 + 1e-9 * ref);
        }
      }
}

TEST(AuditStats, ClopperPearsonInvertsTheBinomialSums) {
  for (std::int64_t n : {1, 10, 97, 1000})
    for (std::int64_t k : {std::int64_t{0}, std::int64_t{1}, n / 2, n - 1, n}) {
      if (k < 0) continue;
      for (double confidence : {0.9, 0.95, 0.99}) {
        const long double tail = 0.5L * (1.0L - confidence);
        const Interval ci = clopper_pearson(k, n, confidence);
        // upper: P[X ≤ k | p] = tail, i.e. P[X ≥ k + 1 | p] = 1 − tail (increasing in p);
        // lower: P[X ≥ k | p] = tail.
        const double upper =
            k == n ? 1.0 : invert_increasing([&](long double p) { return direct_tail(k + 1, n, p); }, 1.0L - tail);
        const double lower = k == 0 ? 0.0 : invert_increasing([&](long double p) { return direct_tail(k, n, p); }, tail);
        EXPECT_NEAR(ci.upper, upper, 1e-9) << "k=" << k << " n=" << n;  // bisection of two exact sums
        EXPECT_NEAR(ci.lower, lower, 1e-9) << "k=" << k << " n=" << n;
        // And the Beta quantiles of certify/stats.h, an independent method (continued fraction).
        EXPECT_NEAR(ci.upper, certify::clopper_pearson_upper(k, n, static_cast<double>(tail)), 1e-9);
        EXPECT_NEAR(ci.lower, certify::clopper_pearson_lower(k, n, static_cast<double>(tail)), 1e-9);
      }
    }
  EXPECT_THROW(clopper_pearson(3, 2, 0.95), InvalidArgument);
  EXPECT_THROW(clopper_pearson(1, 2, 1.0), InvalidArgument);
}

TEST(AuditStats, ManyRunEpsilonFollowsItsFormula) {
  const Interval fpr = clopper_pearson(12, 500, 0.95), fnr = clopper_pearson(40, 500, 0.95);
  const double delta = 1e-5;
  EXPECT_NEAR(many_run_epsilon(12, 500, 40, 500, delta),
              std::max(std::log((1 - delta - fpr.upper) / fnr.upper), std::log((1 - delta - fnr.upper) / fpr.upper)),
              1e-12);
  // Chance-level attacks prove nothing.
  EXPECT_EQ(many_run_epsilon(250, 500, 250, 500, delta), 0.0);
  // The ceiling with 1000 runs each way and perfect separation: 1 − 0.025^(1/1000) = 0.003682 per
  // rate, ε = ln((1 − δ − u)/u) = 5.6.
  const double u = 1.0 - std::pow(0.025, 1.0 / 1000.0);
  EXPECT_NEAR(many_run_epsilon_ceiling(1000, 1000, delta), std::log((1 - delta - u) / u), 1e-9);
  EXPECT_NEAR(many_run_epsilon_ceiling(1000, 1000, delta), 5.6, 0.05);
  EXPECT_THROW(many_run_epsilon(0, 10, 0, 10, 1.0), InvalidArgument);
}

// The bound of Steinke, Nasr & Jagielski 2023 (Thm 5.2) written out term by term in long double.
long double reference_p_value(std::int64_t m, std::int64_t r, std::int64_t v, double eps, double delta) {
  const long double q = 1.0L / (1.0L + std::exp(-static_cast<long double>(eps)));
  std::vector<long double> pmf(static_cast<std::size_t>(r + 1));
  for (std::int64_t j = 0; j <= r; ++j) pmf[static_cast<std::size_t>(j)] = direct_pmf(j, r, q);
  long double p = direct_tail(v, r, q), alpha = 0.0L;
  for (std::int64_t i = 1; i <= v; ++i) {
    long double s = 0.0L;
    for (std::int64_t j = v - i; j < v; ++j) s += pmf[static_cast<std::size_t>(j)];
    alpha = std::max(alpha, s / static_cast<long double>(i));
  }
  return std::min(1.0L, p + 2.0L * m * static_cast<long double>(delta) * alpha);
}

TEST(AuditStats, OneRunPValueEqualsDirectSums) {
  struct Case {
    std::int64_t m, r, v;
  };
  for (const Case c : {Case{10, 10, 10}, Case{100, 40, 30}, Case{1000, 200, 150}, Case{1000, 100, 51}})
    for (double eps : {0.0, 0.5, 2.0, 6.0})
      for (double delta : {0.0, 1e-5, 1e-3}) {
        const double ref = static_cast<double>(reference_p_value(c.m, c.r, c.v, eps, delta));
        EXPECT_NEAR(one_run_p_value(c.m, c.r, c.v, eps, delta), ref, 1e-11 + 1e-8 * ref)
            << "m=" << c.m << " r=" << c.r << " v=" << c.v << " eps=" << eps << " delta=" << delta;
      }
}

TEST(AuditStats, OneRunEpsilonIsTheLargestRejectedEpsilon) {
  // δ = 0 and every guess right: p = q^r, so ε = logit(β^(1/r)) in closed form.
  for (std::int64_t r : {5, 50, 600}) {
    const double q = std::pow(0.05, 1.0 / static_cast<double>(r));
    EXPECT_NEAR(one_run_epsilon(1000, r, r, 0.0), std::log(q / (1.0 - q)), 2e-6) << "r=" << r;
  }
  // In general: p(ε) < β just below the answer and ≥ β just above, by the direct sums.
  for (double delta : {0.0, 1e-5}) {
    const double eps = one_run_epsilon(1000, 300, 240, delta);
    ASSERT_GT(eps, 0.0);
    EXPECT_LT(reference_p_value(1000, 300, 240, eps - 1e-5, delta), 0.05L);
    EXPECT_GE(reference_p_value(1000, 300, 240, eps + 1e-5, delta), 0.05L);
  }
  // δ > 0 can only weaken the bound.
  EXPECT_LT(one_run_epsilon(1000, 300, 240, 1e-3), one_run_epsilon(1000, 300, 240, 0.0));
  // Chance-level guessing proves nothing.
  EXPECT_EQ(one_run_epsilon(1000, 300, 150, 1e-5), 0.0);
  EXPECT_EQ(one_run_epsilon(1000, 0, 0, 1e-5), 0.0);
  EXPECT_THROW(one_run_epsilon(10, 11, 5, 0.0), InvalidArgument);
  EXPECT_THROW(one_run_epsilon(10, 5, 6, 0.0), InvalidArgument);
  EXPECT_THROW(one_run_epsilon(10, 5, 5, 1.5), InvalidArgument);
}

}  // namespace
}  // namespace aegis::privacy
