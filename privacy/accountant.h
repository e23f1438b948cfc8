// Privacy accounting for DP-SGD: how much (ε, δ)-differential privacy a sequence of Poisson-
// subsampled Gaussian steps spends, and how much noise a target ε needs.
//
// Training is described as phases: `steps` steps, each sampling every example independently with
// probability `sampling_rate` and adding Gaussian noise of standard deviation
// `noise_multiplier` × (clipping norm) to the clipped sum. Neighbouring datasets differ by adding
// or removing one example. Two accountants compose the phases:
//
//   rdp  Rényi DP of the sampled Gaussian mechanism (Mironov, Talwar, Zhang 2019), summed over
//        steps and converted to (ε, δ) with the bound of Balle et al. 2020 (Thm 21) /
//        Canonne, Kamath, Steinke 2020, minimized over a grid of orders. A guarantee; often loose.
//   prv  Numerical composition of privacy loss random variables (Gopi, Lee, Wutschitz 2021):
//        the loss distribution of one step is truncated, discretized on a uniform grid and
//        composed by FFT, or for long runs through the Fourier coefficients of the composition.
//        Returns an estimate and bounds that hold by the paper's error analysis; the bound
//        `epsilon_upper` is the guarantee. Tighter than rdp.
//
// Every function validates its arguments and throws aegis::InvalidArgument naming the bad value;
// aegis::NumericError when a computation cannot reach the requested accuracy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace aegis::privacy {

// `steps` steps of the Poisson-subsampled Gaussian mechanism with one (σ, q).
struct SgmPhase {
  double noise_multiplier = 0.0;  // σ, noise standard deviation in units of the clipping norm
  double sampling_rate = 0.0;     // q, the probability that an example is in a batch
  std::int64_t steps = 0;
};

// Which accountant composes the phases: Rényi DP (privacy/rdp.cpp) or the PRV accountant
// (privacy/prv.cpp). Parsed from its name once, at the edge.
enum class Accountant { Rdp, Prv };
const char* accountant_name(Accountant accountant) noexcept;  // "rdp", "prv"
// The inverse of accountant_name; InvalidArgument naming the text otherwise.
Accountant parse_accountant(const std::string& name);

struct EpsilonResult {
  // The ε to report: a guarantee. rdp: its bound. prv: epsilon_upper.
  double epsilon = 0.0;
  // prv: ε of the discretized distribution, within the bounds below. rdp: equal to epsilon.
  double epsilon_estimate = 0.0;
  // prv: the paper's bounds on the true ε. rdp: epsilon_upper = epsilon and epsilon_lower = 0
  // (RDP gives no lower bound).
  double epsilon_lower = 0.0;
  double epsilon_upper = 0.0;
  double delta = 0.0;
  // rdp: the order α at which the conversion is tightest (0 when no step was taken). prv: 0.
  double best_order = 0.0;
  // prv: the accuracy parameters used (delta_error after its default is applied). rdp: 0.
  double eps_error = 0.0;
  double delta_error = 0.0;
  Accountant accountant = Accountant::Rdp;
};

// Throw InvalidArgument unless σ > 0 and finite, q ∈ (0, 1] and steps ≥ 0 for every phase,
// and δ ∈ (0, 1).
void check_phases(const std::vector<SgmPhase>& phases);
void check_delta(double delta);

// ---- rdp (privacy/rdp.cpp) -------------------------------------------------------------------

// RDP of order α > 1 of one step of the Poisson-subsampled Gaussian mechanism with sampling rate
// q ∈ [0, 1] and noise multiplier σ > 0: exact for integer α, the two-series formula of Mironov et
// al. 2019 (§3.3) for fractional α. q = 1 gives α/(2σ²), q = 0 gives 0.
double rdp_sampled_gaussian(double q, double sigma, double order);

// 1.1, 1.2, …, 10.9, then 12, 13, …, 63, then 128, 256, 512, 1024.
std::vector<double> default_rdp_orders();

// The (ε, δ) implied by RDP values at the given orders (Balle et al. 2020, Thm 21):
// ε = min_α rdp(α) + log((α−1)/α) − (log δ + log α)/(α−1).
EpsilonResult rdp_to_epsilon(const std::vector<double>& orders, const std::vector<double>& rdp, double delta);

EpsilonResult rdp_epsilon(const std::vector<SgmPhase>& phases, double delta,
                          const std::vector<double>& orders = default_rdp_orders());

// ---- prv (privacy/prv.cpp) -------------------------------------------------------------------

// eps_error > 0 and delta_error ∈ [0, δ/2] are the accuracy parameters of Gopi et al. 2021 (§5);
// delta_error = 0 means δ/1000. The bounds satisfy epsilon_upper − epsilon_lower ≈ 2·eps_error,
// widened by a bound on the rounding error of T-fold composition (~T·1e-16 of δ̃).
// The grid covers the composed loss distribution (about 15 of its standard deviations, which grow
// like √T) at mesh eps_error/sqrt(T·log(12/delta_error)/2), so it has ~T/eps_error points. Up to
// 2^18 of them are composed by FFT (~40 bytes a point). Longer runs are composed from the few
// hundred Fourier coefficients that describe the composed distribution, without forming the grid.
// NumericError when neither works within 2^25 points (raise eps_error or use rdp), or when δ is
// below the rounding noise of the composition.
EpsilonResult prv_epsilon(const std::vector<SgmPhase>& phases, double delta, double eps_error = 0.01,
                          double delta_error = 0.0);

// The accuracy parameters of prv_epsilon, for the functions below that choose an accountant by name.
struct PrvAccuracy {
  double eps_error = 0.01;
  double delta_error = 0.0;  // 0: δ/1000
};

// ---- both (privacy/calibrate.cpp) ------------------------------------------------------------

// With the given accuracy for prv; rdp ignores it.
EpsilonResult compute_epsilon(Accountant accountant, const std::vector<SgmPhase>& phases, double delta,
                              const PrvAccuracy& accuracy = {});

// The smallest noise multiplier σ (to relative precision rel_tol) whose reported ε is at most
// target_epsilon for `steps` steps at sampling rate q: compute_epsilon(accountant,
// {{σ, q, steps}}, δ).epsilon ≤ target_epsilon always holds for the returned σ (bisection keeps
// the upper end on the safe side). steps must be ≥ 1.
double calibrate_noise_multiplier(Accountant accountant, double target_epsilon, double q, std::int64_t steps,
                                  double delta, double rel_tol = 1e-3, const PrvAccuracy& accuracy = {});

}  // namespace aegis::privacy
