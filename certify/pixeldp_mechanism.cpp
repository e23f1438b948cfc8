// PixelDP mechanisms, estimation bounds and the robustness condition (Lecuyer et al. 2019,
// §II-C and §III; formulas in certify/pixeldp.h).
#include <algorithm>
#include <cmath>
#include <limits>

#include "certify/pixeldp.h"

namespace aegis::certify {

namespace {
bool finite_positive(double v) {
  return std::isfinite(v) && v > 0.0;
}
// sqrt(2 ln(1.25/δ)): the Gaussian mechanism's factor (Dwork & Roth 2014, Thm A.1).
double gaussian_factor(double delta) {
  return std::sqrt(2.0 * std::log(1.25 / delta));
}
void check_confidence(double confidence) {
  AEGIS_CHECK(std::isfinite(confidence) && confidence > 0.0 && confidence < 1.0,
              "confidence " << confidence << " must be in (0, 1)");
}
}  // namespace

PixelDpNorm parse_pixeldp_norm(const std::string& name) {
  if (name == "l1") return PixelDpNorm::L1;
  if (name == "l2") return PixelDpNorm::L2;
  AEGIS_THROW(InvalidArgument, "unknown PixelDP norm '" << name << "' (expected l1 or l2)");
}

const char* pixeldp_norm_name(PixelDpNorm norm) {
  return norm == PixelDpNorm::L1 ? "l1" : "l2";
}

NoiseKind noise_kind_for(PixelDpNorm norm) {
  return norm == PixelDpNorm::L1 ? NoiseKind::Laplace : NoiseKind::Gaussian;
}

NoiseKind parse_noise_kind(const std::string& name) {
  if (name == "gaussian") return NoiseKind::Gaussian;
  if (name == "laplace") return NoiseKind::Laplace;
  AEGIS_THROW(InvalidArgument, "unknown noise kind '" << name << "' (expected gaussian or laplace)");
}

const char* noise_kind_name(NoiseKind kind) {
  return kind == NoiseKind::Laplace ? "laplace" : "gaussian";
}

void check_pixeldp_params(const PixelDpParams& p) {
  AEGIS_CHECK(finite_positive(p.eps), "PixelDP epsilon " << p.eps << " must be positive and finite");
  AEGIS_CHECK(finite_positive(p.L), "PixelDP construction bound L " << p.L << " must be positive and finite");
  if (p.norm == PixelDpNorm::L2) {
    AEGIS_CHECK(p.eps <= 1.0,
                "PixelDP epsilon " << p.eps << " must be at most 1 for the Gaussian mechanism (L2 attacks)");
    AEGIS_CHECK(std::isfinite(p.delta) && p.delta > 0.0 && p.delta < 1.0,
                "PixelDP delta " << p.delta << " must be in (0, 1)");
  }
}

double gaussian_sigma(double eps, double delta, double sensitivity, double L) {
  PixelDpParams p;
  p.norm = PixelDpNorm::L2;
  p.eps = eps;
  p.delta = delta;
  p.L = L;
  check_pixeldp_params(p);
  AEGIS_CHECK(finite_positive(sensitivity), "sensitivity " << sensitivity << " must be positive and finite");
  return gaussian_factor(delta) * sensitivity * L / eps;
}

double laplace_scale(double eps, double sensitivity, double L) {
  PixelDpParams p;
  p.norm = PixelDpNorm::L1;
  p.eps = eps;
  p.L = L;
  check_pixeldp_params(p);
  AEGIS_CHECK(finite_positive(sensitivity), "sensitivity " << sensitivity << " must be positive and finite");
  return sensitivity * L / eps;
}

double noise_scale(const PixelDpParams& p, double sensitivity) {
  return p.norm == PixelDpNorm::L2 ? gaussian_sigma(p.eps, p.delta, sensitivity, p.L)
                                   : laplace_scale(p.eps, sensitivity, p.L);
}

void check_mechanism(const PixelDpMechanism& m) {
  AEGIS_CHECK(finite_positive(m.scale), "PixelDP noise scale " << m.scale << " must be positive and finite");
  AEGIS_CHECK(finite_positive(m.sensitivity),
              "PixelDP sensitivity " << m.sensitivity << " must be positive and finite");
  if (m.norm == PixelDpNorm::L2)
    AEGIS_CHECK(std::isfinite(m.delta) && m.delta > 0.0 && m.delta < 1.0,
                "PixelDP delta " << m.delta << " must be in (0, 1)");
}

// Gaussian: ε(L) = sqrt(2 ln(1.25/δ))·Δ·L/σ; Laplace: ε(L) = Δ·L/b (the calibrations solved for ε).
double PixelDpMechanism::epsilon_at(double L) const {
  check_mechanism(*this);
  AEGIS_CHECK(std::isfinite(L) && L >= 0.0, "attack size " << L << " must be ≥ 0 and finite");
  const double per_unit = norm == PixelDpNorm::L2 ? gaussian_factor(delta) * sensitivity / scale : sensitivity / scale;
  return per_unit * L;
}

double PixelDpMechanism::size_at(double epsilon) const {
  check_mechanism(*this);
  AEGIS_CHECK(!std::isnan(epsilon) && epsilon >= 0.0, "epsilon " << epsilon << " must be ≥ 0");
  const double per_unit = norm == PixelDpNorm::L2 ? gaussian_factor(delta) * sensitivity / scale : sensitivity / scale;
  return epsilon / per_unit;
}

double PixelDpMechanism::max_epsilon() const {
  return norm == PixelDpNorm::L2 ? 1.0 : std::numeric_limits<double>::infinity();
}

double PixelDpMechanism::effective_delta() const {
  return norm == PixelDpNorm::L2 ? delta : 0.0;
}

BoundKind parse_bound_kind(const std::string& name) {
  if (name == "hoeffding") return BoundKind::Hoeffding;
  if (name == "bernstein") return BoundKind::Bernstein;
  AEGIS_THROW(InvalidArgument, "unknown bound '" << name << "' (expected hoeffding or bernstein)");
}

const char* bound_kind_name(BoundKind kind) {
  return kind == BoundKind::Bernstein ? "bernstein" : "hoeffding";
}

// Hoeffding (1963), Thm 2 for X_s ∈ [0, 1]: P[|X̄ − E X| ≥ t] ≤ 2·exp(−2nt²). Setting the right
// side to (1 − η)/K (Bonferroni over K classes) gives t = sqrt(ln(2K/(1 − η))/(2n)).
double hoeffding_half_width(std::int64_t n, std::int64_t num_classes, double confidence) {
  AEGIS_CHECK(n >= 1, "number of draws " << n << " must be at least 1");
  AEGIS_CHECK(num_classes >= 2, "number of classes " << num_classes << " must be at least 2");
  check_confidence(confidence);
  return std::sqrt(std::log(2.0 * static_cast<double>(num_classes) / (1.0 - confidence)) /
                   (2.0 * static_cast<double>(n)));
}

// Maurer & Pontil (2009), Thm 4: for X_s ∈ [0, 1] and n ≥ 2, with probability ≥ 1 − α,
//   E X ≤ X̄ + sqrt(2·V·ln(2/α)/n) + 7·ln(2/α)/(3(n − 1)),  V = Σ(X_s − X̄)²/(n − 1).
// Applied to X and to 1 − X with α = (1 − η)/(2K) each, so ln(2/α) = ln(4K/(1 − η)).
double bernstein_half_width(std::int64_t n, std::int64_t num_classes, double confidence, double sample_variance) {
  AEGIS_CHECK(n >= 2, "the empirical Bernstein bound needs at least 2 draws, got " << n);
  AEGIS_CHECK(num_classes >= 2, "number of classes " << num_classes << " must be at least 2");
  check_confidence(confidence);
  AEGIS_CHECK(std::isfinite(sample_variance) && sample_variance >= 0.0,
              "sample variance " << sample_variance << " must be ≥ 0 and finite");
  const double nd = static_cast<double>(n);
  const double log_term = std::log(4.0 * static_cast<double>(num_classes) / (1.0 - confidence));
  return std::sqrt(2.0 * sample_variance * log_term / nd) + 7.0 * log_term / (3.0 * (nd - 1.0));
}

ScoreEstimate estimate_scores(const std::vector<double>& sum, const std::vector<double>& sum_sq, std::int64_t n,
                              double confidence, BoundKind bound) {
  const std::size_t k = sum.size();
  AEGIS_CHECK_AS(ShapeError, sum_sq.size() == k,
                 "estimate_scores: " << k << " sums but " << sum_sq.size() << " sums of squares");
  AEGIS_CHECK(n >= 1, "number of draws " << n << " must be at least 1");
  const double nd = static_cast<double>(n);
  const double hoeffding =
      bound == BoundKind::Hoeffding ? hoeffding_half_width(n, static_cast<std::int64_t>(k), confidence) : 0.0;
  ScoreEstimate e;
  e.mean.resize(k);
  e.lower.resize(k);
  e.upper.resize(k);
  for (std::size_t c = 0; c < k; ++c) {
    AEGIS_CHECK_AS(NumericError, std::isfinite(sum[c]) && std::isfinite(sum_sq[c]),
                   "estimate_scores: class " << c << " has a non-finite score sum " << sum[c]);
    AEGIS_CHECK(sum[c] >= -1e-9 * nd && sum[c] <= nd * (1.0 + 1e-9),
                "estimate_scores: class " << c << " score sum " << sum[c] << " is outside [0, n = " << n
                                          << "]: scores must lie in [0, 1]");
    const double mean = std::clamp(sum[c] / nd, 0.0, 1.0);
    double half = hoeffding;
    if (bound == BoundKind::Bernstein) {
      // Unbiased sample variance from the two sums; rounding can make it slightly negative.
      const double variance = std::max(0.0, (sum_sq[c] - sum[c] * sum[c] / nd) / (nd - 1.0));
      half = bernstein_half_width(n, static_cast<std::int64_t>(k), confidence, variance);
    }
    e.mean[c] = mean;
    e.lower[c] = std::max(0.0, mean - half);
    e.upper[c] = std::min(1.0, mean + half);
    if (e.prediction < 0 || mean > e.mean[static_cast<std::size_t>(e.prediction)])
      e.prediction = static_cast<std::int64_t>(c);
  }
  return e;
}

// Proposition 1: E[A_k] > e^{2ε}·max_{i≠k} E[A_i] + (1 + e^ε)·δ, here with the bounds.
bool robustness_condition(double lower_k, double upper_other, double eps, double delta) {
  AEGIS_CHECK(std::isfinite(eps) && eps >= 0.0, "epsilon " << eps << " must be ≥ 0 and finite");
  AEGIS_CHECK(std::isfinite(delta) && delta >= 0.0 && delta < 1.0, "delta " << delta << " must be in [0, 1)");
  return lower_k > std::exp(2.0 * eps) * upper_other + (1.0 + std::exp(eps)) * delta;
}

double max_robust_epsilon(double lower_k, double upper_other, double delta, double eps_cap) {
  AEGIS_CHECK(std::isfinite(lower_k) && lower_k >= 0.0 && lower_k <= 1.0,
              "lower bound " << lower_k << " must be in [0, 1]");
  AEGIS_CHECK(std::isfinite(upper_other) && upper_other >= 0.0 && upper_other <= 1.0,
              "upper bound " << upper_other << " must be in [0, 1]");
  AEGIS_CHECK(std::isfinite(delta) && delta >= 0.0 && delta < 1.0, "delta " << delta << " must be in [0, 1)");
  AEGIS_CHECK(!std::isnan(eps_cap) && eps_cap > 0.0, "epsilon cap " << eps_cap << " must be positive");
  // At ε → 0 the condition reads lower > upper + 2δ; the right side only grows with ε.
  if (!(lower_k > upper_other + 2.0 * delta)) return 0.0;
  // u = e^ε solves upper·u² + δ·u − (lower − δ) = 0 at the boundary; its positive root is the
  // supremum (the left side of the quadratic increases in u > 0).
  double u;
  if (upper_other > 0.0) {
    const double c = lower_k - delta;
    u = (-delta + std::sqrt(delta * delta + 4.0 * upper_other * c)) / (2.0 * upper_other);
  } else {
    u = delta > 0.0 ? (lower_k - delta) / delta : std::numeric_limits<double>::infinity();
  }
  const double eps = std::log(u);
  return std::min(std::max(eps, 0.0), eps_cap);
}

double robustness_size(const ScoreEstimate& e, const PixelDpMechanism& m) {
  check_mechanism(m);
  const std::size_t k = e.mean.size();
  AEGIS_CHECK_AS(ShapeError, k >= 2 && e.lower.size() == k && e.upper.size() == k,
                 "robustness_size: an estimate needs K ≥ 2 classes with bounds, got " << k);
  AEGIS_CHECK(e.prediction >= 0 && static_cast<std::size_t>(e.prediction) < k,
              "robustness_size: prediction " << e.prediction << " is not a class of " << k);
  double upper_other = 0.0;
  for (std::size_t c = 0; c < k; ++c)
    if (c != static_cast<std::size_t>(e.prediction) && !(e.upper[c] <= upper_other))
      upper_other = e.upper[c];  // not std::max, which drops a NaN that max_robust_epsilon must refuse
  const double eps = max_robust_epsilon(e.lower[static_cast<std::size_t>(e.prediction)], upper_other,
                                        m.effective_delta(), m.max_epsilon());
  return eps > 0.0 ? m.size_at(eps) : 0.0;
}

}  // namespace aegis::certify
