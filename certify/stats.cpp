#include "certify/stats.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace aegis::certify {

namespace {

// Abramowitz & Stegun 26.2.23: a starting point for Φ⁻¹(p), p ≤ ½, with |error| < 4.5e-4.
double quantile_start(double p) {
  const double t = std::sqrt(-2.0 * std::log(p));
  return -(t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
}

// The continued fraction of I_x(a, b) (Numerical Recipes 3rd ed. §6.4, Eq. 6.4.5), evaluated by the
// modified Lentz method; converges quickly for x < (a + 1)/(a + b + 2).
double beta_continued_fraction(double x, double a, double b) {
  constexpr double kTiny = 1e-300;
  constexpr int kMaxIterations = 1000000;
  const double qab = a + b, qap = a + 1.0, qam = a - 1.0;
  double c = 1.0;
  double d = 1.0 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= kMaxIterations; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1.0) < 1e-16) return h;
  }
  AEGIS_CHECK_AS(NumericError, false, "incomplete beta: continued fraction did not converge for x=" << x << ", a=" << a
                                                                                                    << ", b=" << b);
  return h;
}

void check_count(std::int64_t k, std::int64_t n, double alpha, const char* what) {
  AEGIS_CHECK(n >= 1, what << ": number of trials n=" << n << " must be at least 1");
  AEGIS_CHECK(k >= 0 && k <= n, what << ": count k=" << k << " must lie in [0, n=" << n << "]");
  AEGIS_CHECK(alpha > 0.0 && alpha < 1.0, what << ": alpha=" << alpha << " must lie in (0, 1)");
}

}  // namespace

double normal_cdf(double x) {
  AEGIS_CHECK(!std::isnan(x), "normal_cdf: x is NaN");
  return 0.5 * std::erfc(-x / std::sqrt(2.0));
}

double normal_quantile(double p) {
  AEGIS_CHECK(p > 0.0 && p < 1.0, "normal_quantile: p=" << p << " must lie in (0, 1)");
  // Solve in the lower tail, where Φ is computed to full relative precision; 1 − p is exact for p ≥ ½.
  const bool upper = p > 0.5;
  const double q = upper ? 1.0 - p : p;
  double x = quantile_start(q);
  // Halley's method on f(x) = Φ(x) − q: f' = φ(x), f'' = −x·φ(x); cubic convergence from the start.
  for (int it = 0; it < 50; ++it) {
    const double phi = std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
    const double t = (normal_cdf(x) - q) / phi;
    const double step = t / (1.0 + 0.5 * x * t);
    x -= step;
    if (std::fabs(step) <= 1e-16 * std::fabs(x) + 1e-300) break;
  }
  return upper ? -x : x;
}

double regularized_beta(double x, double a, double b) {
  AEGIS_CHECK(a > 0.0 && b > 0.0 && std::isfinite(a) && std::isfinite(b),
              "regularized_beta: a=" << a << " and b=" << b << " must be positive and finite");
  AEGIS_CHECK(x >= 0.0 && x <= 1.0, "regularized_beta: x=" << x << " must lie in [0, 1]");
  if (x == 0.0) return 0.0;
  if (x == 1.0) return 1.0;
  // ln of x^a (1−x)^b / B(a, b), the prefactor of Eq. 6.4.5.
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  const double front = std::exp(log_front);
  if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_continued_fraction(x, a, b) / a;
  return 1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b;
}

double beta_quantile(double q, double a, double b) {
  AEGIS_CHECK(q >= 0.0 && q <= 1.0, "beta_quantile: q=" << q << " must lie in [0, 1]");
  if (q == 0.0) return 0.0;
  if (q == 1.0) return 1.0;
  // Bracket [lo, hi] with I_lo ≤ q < I_hi; first shrink hi geometrically so that tiny quantiles are found
  // to full relative precision, then bisect (geometric midpoints while the bracket spans a factor > 2).
  double lo = 0.0, hi = 1.0;
  for (double x = 0.5; x > 1e-300; x *= 0.5) {
    if (regularized_beta(x, a, b) <= q) {
      lo = x;
      break;
    }
    hi = x;
  }
  while (true) {
    const double mid = (lo > 0.0 && hi > 2.0 * lo) ? std::sqrt(lo * hi) : lo + 0.5 * (hi - lo);
    if (mid <= lo || mid >= hi) break;
    if (regularized_beta(mid, a, b) <= q)
      lo = mid;
    else
      hi = mid;
  }
  return lo;  // I_lo(a, b) ≤ q: the conservative end of the final bracket
}

double clopper_pearson_lower(std::int64_t k, std::int64_t n, double alpha) {
  check_count(k, n, alpha, "clopper_pearson_lower");
  if (k == 0) return 0.0;
  // Closed form at k = n: I_x(n, 1) = xⁿ = α.
  if (k == n) return std::pow(alpha, 1.0 / static_cast<double>(n));
  return beta_quantile(alpha, static_cast<double>(k), static_cast<double>(n - k + 1));
}

double clopper_pearson_upper(std::int64_t k, std::int64_t n, double alpha) {
  check_count(k, n, alpha, "clopper_pearson_upper");
  if (k == n) return 1.0;
  // By symmetry the upper bound for k successes is 1 − the lower bound for n − k successes.
  return 1.0 - clopper_pearson_lower(n - k, n, alpha);
}

double binomial_test_two_sided(std::int64_t k, std::int64_t n) {
  AEGIS_CHECK(n >= 0, "binomial_test_two_sided: n=" << n << " must be non-negative");
  AEGIS_CHECK(k >= 0 && k <= n, "binomial_test_two_sided: k=" << k << " must lie in [0, n=" << n << "]");
  if (n == 0) return 1.0;
  const std::int64_t hi = k >= n - k ? k : n - k;
  if (2 * hi == n) return 1.0;
  // P[X ≥ hi] for X ~ Binomial(n, ½) is I_{½}(hi, n − hi + 1) (Numerical Recipes Eq. 6.4.12).
  const double tail = regularized_beta(0.5, static_cast<double>(hi), static_cast<double>(n - hi + 1));
  return std::fmin(1.0, 2.0 * tail);
}

}  // namespace aegis::certify
