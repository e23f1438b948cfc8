// The statistics of privacy audits, in double precision. Scores are "higher = more likely a
// member" throughout; `members[i]` says whether example i really was one.
//   roc_curve        the ROC curve over every distinct score threshold (ties form one step), from
//                    (0, 0) to (1, 1); its area is the Mann–Whitney statistic with ties counted ½.
//   tpr_at_fpr       the largest TPR of a threshold whose FPR is at most the given one (Carlini et
//                    al. 2022, "Membership inference attacks from first principles", §3: the
//                    low-FPR regime is what matters).
//   balanced_accuracy  max over thresholds of (TPR + 1 − FPR)/2.
//   clopper_pearson  the exact two-sided binomial confidence interval (Clopper & Pearson 1934).
//   many_run_epsilon the ε lower bound of Jagielski, Ullman & Oprea 2020 and Nasr et al. 2021:
//                    an (ε, δ)-DP mechanism has FPR + e^ε·FNR ≥ 1 − δ for every test, so
//                    ε ≥ ln((1 − δ − FPR_ub)/FNR_ub), with both rates replaced by their
//                    Clopper–Pearson upper bounds (and the same with the roles swapped).
//   one_run_epsilon  the bound of Steinke, Nasr & Jagielski 2023 ("Privacy auditing with one (1)
//                    training run", arXiv:2305.08846, Thm 5.2): m canaries, each included w.p. ½, r guesses, v right.
// Bad arguments throw InvalidArgument naming the value.
#pragma once

#include <cstdint>
#include <vector>

namespace aegis::privacy {

struct RocPoint {
  double fpr = 0.0, tpr = 0.0;
  double threshold = 0.0;  // "member" when score ≥ threshold (+inf for the (0, 0) point)
};
struct RocCurve {
  std::vector<RocPoint> points;  // FPR and TPR non-decreasing, first (0, 0), last (1, 1)
  double auc = 0.0;
  std::int64_t positives = 0, negatives = 0;
};
// Needs at least one member and one non-member, and finite scores.
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<bool>& members);
double tpr_at_fpr(const RocCurve& roc, double max_fpr);
double balanced_accuracy(const RocCurve& roc);

// The same attack numbers as a report carries them.
struct AttackMetrics {
  double auc = 0.0, balanced_accuracy = 0.0;
  double tpr_at_0_1_fpr = 0.0, tpr_at_1_fpr = 0.0;  // at FPR ≤ 0.1% and ≤ 1%
};
AttackMetrics attack_metrics(const RocCurve& roc);

// Binomial(n, p): P[X ≥ k] (1 for k ≤ 0, 0 for k > n), summed term by term in log space from k
// until the terms stop mattering (relative error about 1e-13 for n up to 10^5).
double binomial_tail(std::int64_t k, std::int64_t n, double p);

struct Interval {
  double lower = 0.0, upper = 1.0;
};
// The two-sided `confidence` Clopper–Pearson interval for k successes in n trials: each end is a
// one-sided bound at (1 − confidence)/2, found by bisection on binomial_tail (O(n) per step, for
// the run counts of audits); lower = 0 at k = 0 and upper = 1 at k = n.
Interval clopper_pearson(std::int64_t k, std::int64_t n, double confidence);

// ε ≥ max(ln((1 − δ − FPR_ub)/FNR_ub), ln((1 − δ − FNR_ub)/FPR_ub), 0) with the Clopper–Pearson
// upper bounds (two-sided at `confidence`) of FPR = false_positives/negatives and
// FNR = false_negatives/positives.
double many_run_epsilon(std::int64_t false_positives, std::int64_t negatives, std::int64_t false_negatives,
                        std::int64_t positives, double delta, double confidence = 0.95);
// The most the many-run audit can show with these run counts: the bound at zero errors.
double many_run_epsilon_ceiling(std::int64_t negatives, std::int64_t positives, double delta,
                                double confidence = 0.95);

// Steinke, Nasr & Jagielski 2023, Thm 5.2: if the mechanism is (ε, δ)-DP, the probability that r
// guesses about m canaries have at least v right is at most
//   f(v) + 2mδ·max_{1≤i≤v} (f(v − i) − f(v))/i,   f(u) = P[Binomial(r, e^ε/(1 + e^ε)) ≥ u]
// (with δ = 0 the second term vanishes: their pure-DP statement). This is that bound, capped at 1;
// the maximum over i is the one their Algorithm 2 takes.
double one_run_p_value(std::int64_t canaries, std::int64_t guesses, std::int64_t correct, double epsilon,
                       double delta);
// The largest ε whose p-value is still below 1 − confidence (to 1e-6), i.e. the (ε, δ) pairs the
// audit rejects at that confidence; 0 when not even ε = 0 is rejected.
double one_run_epsilon(std::int64_t canaries, std::int64_t guesses, std::int64_t correct, double delta,
                       double confidence = 0.95);

}  // namespace aegis::privacy
