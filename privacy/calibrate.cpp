// Choosing an accountant by name, and the noise multiplier that meets a target ε.
#include <cmath>
#include <functional>

#include "privacy/accountant.h"
#include "core/error.h"
#include "core/named_enum.h"

namespace aegis::privacy {

namespace {

// Noise multipliers searched for a target: below 1e-3 every accountant reports ε in the
// thousands, above 1e7 the ε of any realistic run is ~0.
constexpr double kMinSigma = 1e-3;
constexpr double kMaxSigma = 1e7;

// Bisection on log σ for the decreasing ε(σ), started from a bracket found by stepping from
// `start` by `factor`. Invariant: ε(hi) ≤ target < ε(lo); only values of σ whose ε was computed
// and found ≤ target ever become `hi`, so the returned σ never overshoots the target.
double bisect_sigma(const std::function<double(double)>& epsilon_of, double target, double start, double factor,
                    double rel_tol) {
  double lo, hi;
  if (epsilon_of(start) <= target) {
    hi = start;
    lo = start / factor;
    while (epsilon_of(lo) <= target) {
      hi = lo;
      lo /= factor;
      AEGIS_CHECK(lo >= kMinSigma, "target epsilon " << target << " is met by every noise multiplier down to "
                                                     << kMinSigma << "; such a target gives no meaningful privacy");
    }
  } else {
    lo = start;
    hi = start * factor;
    while (epsilon_of(hi) > target) {
      lo = hi;
      hi *= factor;
      AEGIS_CHECK(hi <= kMaxSigma,
                  "target epsilon " << target << " is not met even with noise multiplier " << kMaxSigma);
    }
  }
  while (hi / lo - 1.0 > rel_tol) {
    const double mid = std::sqrt(lo * hi);
    if (epsilon_of(mid) <= target)
      hi = mid;
    else
      lo = mid;
  }
  return hi;
}

}  // namespace

const char* accountant_name(Accountant accountant) noexcept {
  return accountant == Accountant::Rdp ? "rdp" : "prv";
}

Accountant parse_accountant(const std::string& name) {
  return parse_named(name, {Accountant::Rdp, Accountant::Prv}, accountant_name, "accountant");
}

EpsilonResult compute_epsilon(Accountant accountant, const std::vector<SgmPhase>& phases, double delta,
                              const PrvAccuracy& accuracy) {
  return accountant == Accountant::Rdp ? rdp_epsilon(phases, delta)
                                       : prv_epsilon(phases, delta, accuracy.eps_error, accuracy.delta_error);
}

double calibrate_noise_multiplier(Accountant accountant, double target_epsilon, double q, std::int64_t steps,
                                  double delta, double rel_tol, const PrvAccuracy& accuracy) {
  AEGIS_CHECK(std::isfinite(target_epsilon) && target_epsilon > 0.0,
              "target epsilon " << target_epsilon << " must be positive and finite");
  check_phases({{1.0, q, steps}});
  AEGIS_CHECK(steps > 0, "steps " << steps << ": calibration needs at least one step");
  check_delta(delta);
  AEGIS_CHECK(rel_tol > 0.0 && rel_tol < 0.5, "relative tolerance " << rel_tol << " must be in (0, 0.5)");

  auto epsilon_with = [&](Accountant a) {
    return [&, a](double sigma) { return compute_epsilon(a, {{sigma, q, steps}}, delta, accuracy).epsilon; };
  };
  // RDP is cheap: bracket from σ = 1 by doubling.
  const double sigma_rdp = bisect_sigma(epsilon_with(Accountant::Rdp), target_epsilon, 1.0, 2.0, rel_tol);
  if (accountant == Accountant::Rdp) return sigma_rdp;
  // PRV is tighter, so its σ is usually a little below the RDP one: start there, step by 1.25.
  return bisect_sigma(epsilon_with(Accountant::Prv), target_epsilon, sigma_rdp, 1.25, rel_tol);
}

}  // namespace aegis::privacy
