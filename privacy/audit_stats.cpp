#include "privacy/audit_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace aegis::privacy {

namespace {

void check_rate(double value, const char* what) {
  AEGIS_CHECK(value >= 0.0 && value <= 1.0, what << "=" << value << " must lie in [0, 1]");
}

void check_confidence(double confidence) {
  AEGIS_CHECK(confidence > 0.0 && confidence < 1.0, "confidence=" << confidence << " must lie in (0, 1)");
}

void check_delta(double delta) {
  AEGIS_CHECK(delta >= 0.0 && delta < 1.0, "delta=" << delta << " must lie in [0, 1)");
}

// log P[Binomial(n, p) = k], 0 < p < 1.
double log_binomial_pmf(std::int64_t k, std::int64_t n, double p) {
  const double kd = static_cast<double>(k), nd = static_cast<double>(n);
  return std::lgamma(nd + 1.0) - std::lgamma(kd + 1.0) - std::lgamma(nd - kd + 1.0) + kd * std::log(p) +
         (nd - kd) * std::log1p(-p);
}

}  // namespace

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<bool>& members) {
  AEGIS_CHECK(scores.size() == members.size(),
              "ROC: " << scores.size() << " scores but " << members.size() << " membership labels");
  RocCurve roc;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    AEGIS_CHECK(std::isfinite(scores[i]), "ROC: score " << i << " is " << scores[i] << ", not finite");
    (members[i] ? roc.positives : roc.negatives) += 1;
  }
  AEGIS_CHECK(roc.positives > 0 && roc.negatives > 0, "ROC: needs members and non-members, got "
                                                           << roc.positives << " members and " << roc.negatives
                                                           << " non-members");
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  const double pos = static_cast<double>(roc.positives), neg = static_cast<double>(roc.negatives);
  roc.points.push_back({0.0, 0.0, std::numeric_limits<double>::infinity()});
  std::int64_t tp = 0, fp = 0;
  double area = 0.0;  // in units of (positives × negatives), summed exactly on integers halves
  for (std::size_t i = 0; i < order.size();) {
    // Every example with this score flips at the same threshold: one (diagonal) step.
    const double threshold = scores[order[i]];
    std::int64_t dtp = 0, dfp = 0;
    for (; i < order.size() && scores[order[i]] == threshold; ++i) (members[order[i]] ? dtp : dfp) += 1;
    // Trapezoid under the step: Σ new negatives × (positives above + half the tied positives).
    area += static_cast<double>(dfp) * (static_cast<double>(tp) + 0.5 * static_cast<double>(dtp));
    tp += dtp;
    fp += dfp;
    roc.points.push_back({static_cast<double>(fp) / neg, static_cast<double>(tp) / pos, threshold});
  }
  roc.auc = area / (pos * neg);
  return roc;
}

double tpr_at_fpr(const RocCurve& roc, double max_fpr) {
  check_rate(max_fpr, "max_fpr");
  double best = 0.0;
  for (const RocPoint& p : roc.points)
    if (p.fpr <= max_fpr) best = std::max(best, p.tpr);
  return best;
}

double balanced_accuracy(const RocCurve& roc) {
  double best = 0.5;
  for (const RocPoint& p : roc.points) best = std::max(best, 0.5 * (p.tpr + 1.0 - p.fpr));
  return best;
}

AttackMetrics attack_metrics(const RocCurve& roc) {
  AttackMetrics m;
  m.auc = roc.auc;
  m.balanced_accuracy = balanced_accuracy(roc);
  m.tpr_at_0_1_fpr = tpr_at_fpr(roc, 0.001);
  m.tpr_at_1_fpr = tpr_at_fpr(roc, 0.01);
  return m;
}

double binomial_tail(std::int64_t k, std::int64_t n, double p) {
  AEGIS_CHECK(n >= 0, "binomial: n=" << n << " must be non-negative");
  check_rate(p, "binomial p");
  if (k <= 0) return 1.0;
  if (k > n) return 0.0;
  if (p == 0.0) return 0.0;
  if (p == 1.0) return 1.0;
  // Σ_{j≥k} pmf(j) in log space, each term from the last by pmf(j+1)/pmf(j) = (n−j)/(j+1)·p/(1−p);
  // past the mode the terms only shrink, and the sum stops when they no longer change it.
  const double log_odds = std::log(p) - std::log1p(-p);
  const double mode = std::floor(static_cast<double>(n + 1) * p);
  double log_term = log_binomial_pmf(k, n, p), log_sum = log_term;
  for (std::int64_t j = k; j < n; ++j) {
    log_term += std::log(static_cast<double>(n - j) / static_cast<double>(j + 1)) + log_odds;
    const double hi = std::max(log_sum, log_term);
    log_sum = hi + std::log(std::exp(log_sum - hi) + std::exp(log_term - hi));
    if (static_cast<double>(j) > mode && log_term < log_sum - 45.0) break;  // e^-45 < 2^-64
  }
  return std::min(1.0, std::exp(log_sum));
}

namespace {

// The p ∈ [0, 1] with tail(p) = target, for tail increasing in p, by bisection to 2^-64.
template <class F>
double bisect_increasing(F&& tail, double target) {
  double lo = 0.0, hi = 1.0;
  for (int it = 0; it < 64; ++it) {
    const double mid = 0.5 * (lo + hi);
    (tail(mid) < target ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace

Interval clopper_pearson(std::int64_t k, std::int64_t n, double confidence) {
  check_confidence(confidence);
  AEGIS_CHECK(n >= 1, "Clopper-Pearson: number of trials n=" << n << " must be at least 1");
  AEGIS_CHECK(k >= 0 && k <= n, "Clopper-Pearson: count k=" << k << " must lie in [0, n=" << n << "]");
  const double tail = 0.5 * (1.0 - confidence);
  // Clopper & Pearson 1934: the lower end solves P[X ≥ k | p] = tail, the upper end
  // P[X ≤ k | p] = tail, i.e. P[X ≥ k + 1 | p] = 1 − tail; both tails grow with p.
  Interval ci;
  ci.lower = k == 0 ? 0.0 : bisect_increasing([&](double p) { return binomial_tail(k, n, p); }, tail);
  ci.upper = k == n ? 1.0 : bisect_increasing([&](double p) { return binomial_tail(k + 1, n, p); }, 1.0 - tail);
  return ci;
}

double many_run_epsilon(std::int64_t false_positives, std::int64_t negatives, std::int64_t false_negatives,
                        std::int64_t positives, double delta, double confidence) {
  check_delta(delta);
  const double fpr = clopper_pearson(false_positives, negatives, confidence).upper;
  const double fnr = clopper_pearson(false_negatives, positives, confidence).upper;
  // FPR + e^ε·FNR ≥ 1 − δ and FNR + e^ε·FPR ≥ 1 − δ (Kairouz et al. 2015, Thm 2.1; used as an
  // audit by Jagielski et al. 2020, §3 and Nasr et al. 2021, Eq. 1).
  const auto side = [&](double a, double b) {
    const double num = 1.0 - delta - a;
    return num > 0.0 && b > 0.0 ? std::log(num / b) : 0.0;
  };
  return std::max({0.0, side(fpr, fnr), side(fnr, fpr)});
}

double many_run_epsilon_ceiling(std::int64_t negatives, std::int64_t positives, double delta, double confidence) {
  return many_run_epsilon(0, negatives, 0, positives, delta, confidence);
}

double one_run_p_value(std::int64_t canaries, std::int64_t guesses, std::int64_t correct, double epsilon,
                       double delta) {
  AEGIS_CHECK(canaries >= 1, "one-run audit: canaries=" << canaries << " must be at least 1");
  AEGIS_CHECK(guesses >= 0 && guesses <= canaries,
              "one-run audit: guesses=" << guesses << " must lie in [0, canaries=" << canaries << "]");
  AEGIS_CHECK(correct >= 0 && correct <= guesses,
              "one-run audit: correct=" << correct << " must lie in [0, guesses=" << guesses << "]");
  AEGIS_CHECK(epsilon >= 0.0 && std::isfinite(epsilon), "one-run audit: epsilon=" << epsilon << " must be finite, ≥ 0");
  check_delta(delta);
  const double q = 1.0 / (1.0 + std::exp(-epsilon));  // e^ε/(1 + e^ε), the accuracy of ε-randomized response
  double p = binomial_tail(correct, guesses, q);
  if (delta > 0.0 && correct > 0 && q < 1.0) {
    // max_i P[v − i ≤ X < v]/i: the pmf summed downwards from v − 1.
    double below = 0.0, alpha = 0.0;
    for (std::int64_t i = 1; i <= correct; ++i) {
      below += std::exp(log_binomial_pmf(correct - i, guesses, q));
      alpha = std::max(alpha, below / static_cast<double>(i));
    }
    p += 2.0 * static_cast<double>(canaries) * delta * alpha;
  }
  return std::min(1.0, p);
}

double one_run_epsilon(std::int64_t canaries, std::int64_t guesses, std::int64_t correct, double delta,
                       double confidence) {
  check_confidence(confidence);
  const double beta = 1.0 - confidence;
  // The p-value grows with ε (q does, and every term with it), so bisect on p(ε) < β.
  if (one_run_p_value(canaries, guesses, correct, 0.0, delta) >= beta) return 0.0;
  double lo = 0.0, hi = 1.0;
  while (one_run_p_value(canaries, guesses, correct, hi, delta) < beta) {
    lo = hi;
    hi *= 2.0;
    if (hi > 1e3) return lo;  // q rounds to 1 long before: an unbounded audit cannot happen for r ≥ 1
  }
  while (hi - lo > 1e-6) {
    const double mid = 0.5 * (lo + hi);
    (one_run_p_value(canaries, guesses, correct, mid, delta) < beta ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace aegis::privacy
