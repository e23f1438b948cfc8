// The RDP accountant: Rényi DP of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar,
// Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism") and its conversion
// to (ε, δ)-DP (Balle et al. 2020, "Hypothesis testing interpretations and Rényi DP", Thm 21).
//
// Notation of the paper: μ0 = N(0, σ²), μ1 = N(1, σ²), μ = (1−q)μ0 + qμ1. One step has RDP
// ε(α) = log(A_α)/(α−1) with A_α = E_{z∼μ0}[(μ(z)/μ0(z))^α], the divergence D_α(μ‖μ0) that the
// paper analyses (the dominating direction for the add/remove relation; Opacus and TensorFlow
// Privacy compute the same quantity). Everything is computed in log
// space: A_α reaches e^(α²/2σ²), far beyond double range for α = 1024.
#include <cmath>
#include <cstdint>
#include <limits>

#include "privacy/accountant.h"
#include "core/error.h"

namespace aegis::privacy {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kLogSqrtPi = 0.57236494292470008707;  // log(√π)

// log(e^a + e^b) without overflow.
double log_add(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  const double hi = std::max(a, b);
  return hi + std::log1p(std::exp(std::min(a, b) - hi));
}

// log(e^a − e^b) for a ≥ b.
double log_sub(double a, double b) {
  if (b == kNegInf) return a;
  AEGIS_CHECK_AS(NumericError, a > b, "log-space subtraction of " << b << " from " << a << " is not positive");
  return a + std::log1p(-std::exp(b - a));
}

// log(erfc(x)), also where erfc(x) underflows (x ≳ 26.5). There the asymptotic series
// erfc(x) = e^(−x²)/(x√π) · Σ_n (−1)^n (2n−1)!!/(2x²)^n (Abramowitz & Stegun 7.1.23) converges to
// double precision within a few terms (the n = 9 term is ~1e-21 at x = 26).
double log_erfc(double x) {
  if (x < 26.0) return std::log(std::erfc(x));
  const double inv_2x2 = 1.0 / (2.0 * x * x);
  double term = 1.0;
  double series = 1.0;
  for (int n = 1; n <= 9; ++n) {
    term *= -(2.0 * n - 1.0) * inv_2x2;
    series += term;
  }
  return -x * x - std::log(x) - kLogSqrtPi + std::log(series);
}

// Integer α (§3.3): A_α = Σ_{k=0}^{α} C(α,k) (1−q)^(α−k) q^k exp((k²−k)/(2σ²)), all terms positive.
double log_a_integer(double q, double sigma, std::int64_t alpha) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  double log_binom = 0.0;  // log C(α, k), updated by C(α,k+1) = C(α,k)·(α−k)/(k+1)
  double log_a = kNegInf;
  for (std::int64_t k = 0; k <= alpha; ++k) {
    const double kd = static_cast<double>(k);
    const double log_term =
        log_binom + kd * log_q + static_cast<double>(alpha - k) * log_1mq + (kd * kd - kd) / (2.0 * sigma * sigma);
    log_a = log_add(log_a, log_term);
    log_binom += std::log(static_cast<double>(alpha - k)) - std::log(kd + 1.0);
  }
  return log_a;
}

// Fractional α (§3.3): split the integral at z0, where q·μ1(z)/μ0(z) = 1−q,
// z0 = σ² log(1/q − 1) + 1/2, and expand (1−q + q·μ1/μ0)^α binomially on each side:
//   A_α = Σ_k C(α,k) q^k (1−q)^(α−k) e^((k²−k)/(2σ²)) · ½ erfc((k − z0)/(√2σ))
//       + Σ_k C(α,k) q^(α−k) (1−q)^k e^(((α−k)²−(α−k))/(2σ²)) · ½ erfc((z0 − (α−k))/(√2σ)).
// C(α,k) changes sign for k > α, so positive and negative terms are summed apart. Past k ≈ α the
// terms shrink monotonically (the Gaussian factors cancel against erfc's tail, leaving |C(α,k)|),
// so the sum stops once they fall 40 nats below the running total.
double log_a_fractional(double q, double sigma, double alpha) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double two_var = 2.0 * sigma * sigma;
  const double z0 = sigma * sigma * (log_1mq - log_q) + 0.5;
  const double erfc_scale = 1.0 / (std::sqrt(2.0) * sigma);
  const double log_half = std::log(0.5);
  double log_pos = kNegInf, log_neg = kNegInf;
  double log_abs_binom = 0.0;
  bool binom_negative = false;
  constexpr std::int64_t kMaxTerms = 10'000'000;
  for (std::int64_t k = 0; k < kMaxTerms; ++k) {
    const double kd = static_cast<double>(k);
    const double j = alpha - kd;
    const double s0 = log_abs_binom + kd * log_q + j * log_1mq + (kd * kd - kd) / two_var + log_half +
                      log_erfc((kd - z0) * erfc_scale);
    const double s1 =
        log_abs_binom + j * log_q + kd * log_1mq + (j * j - j) / two_var + log_half + log_erfc((z0 - j) * erfc_scale);
    const double s = log_add(s0, s1);
    if (binom_negative)
      log_neg = log_add(log_neg, s);
    else
      log_pos = log_add(log_pos, s);
    if (kd > alpha + 1.0 && s < log_pos - 40.0) return log_sub(log_pos, log_neg);
    // C(α,k+1) = C(α,k)·(α−k)/(k+1); α is not an integer, so α−k never vanishes.
    log_abs_binom += std::log(std::fabs(j)) - std::log(kd + 1.0);
    if (j < 0.0) binom_negative = !binom_negative;
  }
  AEGIS_THROW(NumericError, "RDP series for order " << alpha << " (q " << q << ", sigma " << sigma
                                                    << ") did not converge in " << kMaxTerms << " terms");
}

}  // namespace

void check_phases(const std::vector<SgmPhase>& phases) {
  for (std::size_t i = 0; i < phases.size(); ++i) {
    const SgmPhase& p = phases[i];
    const std::string where = phases.size() > 1 ? "phase " + std::to_string(i) + ": " : "";
    AEGIS_CHECK(std::isfinite(p.noise_multiplier) && p.noise_multiplier > 0.0,
                where << "noise multiplier " << p.noise_multiplier << " must be positive and finite");
    AEGIS_CHECK(p.sampling_rate > 0.0 && p.sampling_rate <= 1.0,
                where << "sampling rate " << p.sampling_rate << " must be in (0, 1]");
    AEGIS_CHECK(p.steps >= 0, where << "steps " << p.steps << " must be non-negative");
  }
}

void check_delta(double delta) {
  AEGIS_CHECK(delta > 0.0 && delta < 1.0, "delta " << delta << " must be in (0, 1)");
}

double rdp_sampled_gaussian(double q, double sigma, double order) {
  AEGIS_CHECK(q >= 0.0 && q <= 1.0, "sampling rate " << q << " must be in [0, 1]");
  AEGIS_CHECK(std::isfinite(sigma) && sigma > 0.0, "noise multiplier " << sigma << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(order) && order > 1.0, "RDP order " << order << " must be finite and > 1");
  if (q == 0.0) return 0.0;
  // Plain Gaussian mechanism, sensitivity 1: D_α(N(1,σ²)‖N(0,σ²)) = α/(2σ²) (Mironov 2017, "Rényi Differential
  // Privacy").
  if (q == 1.0) return order / (2.0 * sigma * sigma);
  const double log_a = std::floor(order) == order && order <= 1e6
                           ? log_a_integer(q, sigma, static_cast<std::int64_t>(order))
                           : log_a_fractional(q, sigma, order);
  // A_α ≥ 1 in exact arithmetic (a Rényi divergence is non-negative); rounding may dip below.
  return std::max(0.0, log_a / (order - 1.0));
}

std::vector<double> default_rdp_orders() {
  std::vector<double> orders;
  for (int x = 1; x < 100; ++x) orders.push_back(1.0 + x / 10.0);
  for (int a = 12; a < 64; ++a) orders.push_back(a);
  for (double a : {128.0, 256.0, 512.0, 1024.0}) orders.push_back(a);
  return orders;
}

EpsilonResult rdp_to_epsilon(const std::vector<double>& orders, const std::vector<double>& rdp, double delta) {
  check_delta(delta);
  AEGIS_CHECK(!orders.empty() && orders.size() == rdp.size(), "RDP conversion needs one value per order: got "
                                                                  << orders.size() << " orders and " << rdp.size()
                                                                  << " values");
  EpsilonResult r;
  r.delta = delta;
  r.accountant = Accountant::Rdp;
  r.epsilon = std::numeric_limits<double>::infinity();
  bool any_loss = false;
  for (std::size_t i = 0; i < orders.size(); ++i) {
    const double a = orders[i];
    AEGIS_CHECK(std::isfinite(a) && a > 1.0, "RDP order " << a << " must be finite and > 1");
    AEGIS_CHECK(rdp[i] >= 0.0, "RDP value " << rdp[i] << " at order " << a << " must be non-negative");
    any_loss = any_loss || rdp[i] > 0.0;
    // Balle et al. 2020, Thm 21 (also Canonne, Kamath, Steinke 2020): (α, ρ)-RDP implies
    // (ρ + log((α−1)/α) − (log δ + log α)/(α−1), δ)-DP for every δ ∈ (0, 1).
    const double eps = rdp[i] + std::log1p(-1.0 / a) - (std::log(delta) + std::log(a)) / (a - 1.0);
    if (eps < r.epsilon) {
      r.epsilon = eps;
      r.best_order = a;
    }
  }
  if (!any_loss) {
    // A mechanism with zero Rényi divergence at every order ignores its input: (0, 0)-DP.
    r.epsilon = 0.0;
    r.best_order = 0.0;
  }
  // (ε, δ)-DP with ε < 0 implies (0, δ)-DP; ε itself is reported non-negative.
  r.epsilon = std::max(0.0, r.epsilon);
  r.epsilon_estimate = r.epsilon_upper = r.epsilon;
  r.epsilon_lower = 0.0;
  return r;
}

EpsilonResult rdp_epsilon(const std::vector<SgmPhase>& phases, double delta, const std::vector<double>& orders) {
  check_phases(phases);
  check_delta(delta);
  // RDP composes additively over steps and phases (Mironov 2017).
  std::vector<double> total(orders.size(), 0.0);
  for (const SgmPhase& p : phases) {
    if (p.steps == 0) continue;
    for (std::size_t i = 0; i < orders.size(); ++i)
      total[i] += static_cast<double>(p.steps) * rdp_sampled_gaussian(p.sampling_rate, p.noise_multiplier, orders[i]);
  }
  return rdp_to_epsilon(orders, total, delta);
}

}  // namespace aegis::privacy
