// The PRV accountant: numerical composition of privacy loss random variables (Gopi, Lee,
// Wutschitz 2021, "Numerical Composition of Differential Privacy", NeurIPS; arXiv:2106.02848).
// The PRV of one step is in privacy/prv_step.h. For a composition, δ(ε) = E[(1 − e^(ε−Y))₊] with
// Y the sum of the per-step PRVs (Gopi et al., §3), whose density is the convolution of theirs.
//
// The paper's algorithm (§5, Alg. 1): truncate each PRV, discretize it on a grid of mesh h (each
// cell's mass at its centre, then the grid shifted so that the discrete mean equals the truncated
// continuous mean), and convolve by FFT on a circle. Its error analysis gives the accuracy: with
//   h = ε_error / sqrt(T/2 · log(12/δ_error))   (T = total number of steps)
// and tails beyond the grid carrying less than δ_error (Remark 5.6), the discrete δ̃ satisfies
//   δ(ε + ε_error) − δ_error ≤ δ̃(ε) ≤ δ(ε − ε_error) + δ_error,
// so ε̃(δ + δ_error) − ε_error ≤ ε(δ) ≤ ε̃(δ − δ_error) + ε_error.
//
// The circle: the composed PRV has mean T·E[Y₁] and a spread that grows like √T, so a grid
// symmetric about 0 out to its largest value (the paper's [−L, L]) wastes most of its points
// below the mean once T is large. Here the circle is only as long as the composed distribution:
// from a Chernoff lower bound to a Chernoff upper bound on Y, each with tail mass δ_error/8
// (prv_step.h), padded by ε_error for the rounding of the grid. Every step's PRV is laid on the
// circle modulo its length, which commutes with convolution, so the composed pmf read back on that
// window is exact up to the mass outside it. For short compositions the T-fold convolution is one
// forward FFT per phase, each coefficient raised to the power T by repeated squaring, and one
// inverse FFT. For long ones (circles of 2^18 cells and more) the composed pmf is so smooth that a
// few hundred Fourier coefficients describe it; prv_spectral.cpp computes only those and never
// forms the grid.
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <functional>
#include <limits>

#include "privacy/accountant.h"
#include "privacy/prv_step.h"
#include "core/error.h"

namespace aegis::privacy {

namespace {

using detail::DiscretePrv;
using detail::Fft;
using detail::PrvMethod;
using detail::PrvPhase;
using detail::SubsampledGaussianPrv;
using cplx = std::complex<double>;

// On the FFT path each grid point costs ~40 bytes (spectra, twiddles, pmf): 2^25 points is
// ~1.3 GB. The spectral path stores no grid; its circle only has to fit the cell arithmetic.
constexpr std::int64_t kMaxGridPoints = std::int64_t{1} << 25;
constexpr std::int64_t kMaxSpectralCells = std::int64_t{1} << 40;
constexpr std::int64_t kSpectralFrom = std::int64_t{1} << 18;

// The cell whose centre is nearest y; callers keep |y/h| far below 2^63.
std::int64_t cell_of(double y, double h) {
  const double cell = std::floor(y / h + 0.5);
  AEGIS_CHECK_AS(NumericError, std::fabs(cell) < 4e18, "PRV value " << y << " is out of reach of a grid of mesh " << h);
  return static_cast<std::int64_t>(cell);
}

DiscretePrv discretize(const SubsampledGaussianPrv& prv, double lo, double hi, double h) {
  AEGIS_CHECK_AS(NumericError, (hi - lo) / h <= static_cast<double>(2 * kMaxGridPoints),
                 "PRV of sampling rate " << prv.sampling_rate() << ", noise multiplier " << prv.noise_multiplier()
                                         << " spans [" << lo << ", " << hi << "], too many cells of mesh " << h
                                         << "; raise eps_error (account --eps-error)");
  DiscretePrv d;
  d.first = cell_of(lo, h);
  const std::int64_t cells = cell_of(hi, h) - d.first + 1;
  d.mass.resize(static_cast<std::size_t>(cells));
  const double bottom = (static_cast<double>(d.first) - 0.5) * h;
  long double total = 0.0L, discrete_mean = 0.0L;
  double cdf_lo, sf_lo, cdf_hi, sf_hi;
  prv.cdf_sf(bottom, cdf_lo, sf_lo);
  for (std::int64_t i = 0; i < cells; ++i) {
    prv.cdf_sf(bottom + static_cast<double>(i + 1) * h, cdf_hi, sf_hi);
    // A difference of the smaller of F and 1 − F keeps each cell's mass accurate in both tails.
    const double m = cdf_hi <= 0.5 ? cdf_hi - cdf_lo : sf_lo - sf_hi;
    cdf_lo = cdf_hi;
    sf_lo = sf_hi;
    d.mass[static_cast<std::size_t>(i)] = m;
    total += m;
    discrete_mean += static_cast<long double>(m) * (static_cast<double>(d.first + i) * h);
  }
  AEGIS_CHECK_AS(NumericError, total > 0.5L,
                 "PRV of sampling rate " << prv.sampling_rate() << ", noise multiplier " << prv.noise_multiplier()
                                         << " has only " << static_cast<double>(total) << " of its mass on the grid");
  // The paper's mean correction: shift the cells so that their mean equals the mean of the
  // truncated continuous PRV (the error analysis of §5 relies on it).
  const double top = bottom + static_cast<double>(cells) * h;
  const double continuous_mean = prv.partial_mean(bottom, top) / static_cast<double>(total);
  d.shift = continuous_mean - static_cast<double>(discrete_mean / total);
  AEGIS_CHECK_AS(
      NumericError, std::fabs(d.shift) < h / 2,
      "PRV mean correction " << d.shift << " exceeds half the mesh " << h << "; the PRV is too narrow for this grid");
  const double inv_total = 1.0 / static_cast<double>(total);
  for (double& m : d.mass) m *= inv_total;
  return d;
}

// z^e by repeated squaring; once a square drops below 1e-280 the rest of the power is 0 in double.
cplx power(cplx z, std::int64_t e) {
  auto mul = [](cplx a, cplx b) {  // written out: operator* checks for NaN/Inf on every call
    return cplx(a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real());
  };
  cplx result(1.0, 0.0);
  for (;;) {
    if (e & 1) result = mul(result, z);
    e >>= 1;
    if (e == 0) return result;
    z = mul(z, z);
    if (std::norm(z) < 1e-280) return cplx(0.0, 0.0);
  }
}

// The composed PRV on the window of cells J = first, …, first + n − 1, at the values J·h + shift.
struct ComposedPrv {
  std::vector<double> pmf;
  std::int64_t first = 0;
  double h = 0.0, shift = 0.0;
  double value(std::size_t m) const { return static_cast<double>(first + static_cast<std::int64_t>(m)) * h + shift; }
};

// Π_j FFT(p_j)^(T_j) on a circle of n = 2^k points, then one inverse FFT, read back on the window.
ComposedPrv compose(const std::vector<DiscretePrv>& parts, const std::vector<std::int64_t>& steps, double h,
                    std::int64_t first, std::size_t n) {
  const auto modulo = [n](std::int64_t j) {
    const auto r = j % static_cast<std::int64_t>(n);
    return static_cast<std::size_t>(r < 0 ? r + static_cast<std::int64_t>(n) : r);
  };
  const Fft fft(n);
  std::vector<cplx> product, spectrum(n);
  ComposedPrv out;
  out.h = h;
  out.first = first;
  for (std::size_t p = 0; p < parts.size(); ++p) {
    std::fill(spectrum.begin(), spectrum.end(), cplx(0.0, 0.0));
    for (std::size_t i = 0; i < parts[p].mass.size(); ++i)
      spectrum[modulo(parts[p].first + static_cast<std::int64_t>(i))] += parts[p].mass[i];
    fft.forward(spectrum.data());
    for (cplx& z : spectrum) z = power(z, steps[p]);
    if (p == 0)
      product.swap(spectrum);
    else
      for (std::size_t k = 0; k < n; ++k) product[k] *= spectrum[k];
    if (p + 1 < parts.size() && spectrum.size() != n) spectrum.assign(n, cplx(0.0, 0.0));
    out.shift += static_cast<double>(steps[p]) * parts[p].shift;
  }
  spectrum = std::vector<cplx>();
  fft.inverse(product.data());
  out.pmf.resize(n);
  const double inv_n = 1.0 / static_cast<double>(n);
  for (std::size_t m = 0; m < n; ++m) out.pmf[m] = product[modulo(first + static_cast<std::int64_t>(m))].real() * inv_n;
  return out;
}

// ε of the discrete PRV at δ: on [v_{m−1}, v_m), δ(ε) = Σ_{i≥m} p_i (1 − e^(ε − v_i)) = D1 − e^ε·D2,
// decreasing in ε, so scan down from the top and invert on the interval that brackets δ. D2 is
// kept relative to e^(−v_m) (W = e^(v_m)·D2 = p_m + e^(−h)·W_(m+1)), so that no exponential
// overflows however large ε is.
double epsilon_at(const ComposedPrv& prv, double delta) {
  const long double decay = std::exp(-prv.h);
  long double d1 = 0.0L, w = 0.0L;
  for (std::size_t m = prv.pmf.size(); m-- > 0;) {
    d1 += prv.pmf[m];
    w = prv.pmf[m] + decay * w;
    if (m > 0 && d1 - w * decay < delta) continue;
    AEGIS_CHECK_AS(NumericError, m + 1 < prv.pmf.size(), "PRV epsilon lies at the top of the grid; domain too small");
    if (d1 <= delta) return -std::numeric_limits<double>::infinity();
    return prv.value(m) + static_cast<double>(std::log((d1 - delta) / w));
  }
  return -std::numeric_limits<double>::infinity();
}

// The same search on a spectral PRV: δ̃ at the left end of cell m's interval is
// mass(m) − e^(−h)·weighted(m), non-increasing in m, so bisect for the last m where it is ≥ δ.
// `noise` grows to the error bound of the sums used.
double epsilon_at(const detail::SpectralPrv& prv, double delta, double& noise) {
  double mass, weighted, error;
  const double decay = std::exp(-prv.h);
  auto value = [&](std::int64_t m) { return static_cast<double>(prv.first + m) * prv.h + prv.shift; };
  auto delta_left = [&](std::int64_t m) {
    detail::spectral_tail(prv, m, mass, weighted, error);
    return mass - decay * weighted;
  };
  std::int64_t lo = 1, hi = prv.n - 1;  // invariant: δ̃ at lo's left end ≥ δ, at hi's < δ
  if (delta_left(lo) < delta) {
    detail::spectral_tail(prv, 0, mass, weighted, error);
    noise = std::max(noise, error);
    return mass <= delta ? -std::numeric_limits<double>::infinity() : value(0) + std::log((mass - delta) / weighted);
  }
  AEGIS_CHECK_AS(NumericError, delta_left(hi) < delta, "PRV epsilon lies at the top of the grid; domain too small");
  while (hi - lo > 1) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    (delta_left(mid) >= delta ? lo : hi) = mid;
  }
  detail::spectral_tail(prv, lo, mass, weighted, error);
  noise = std::max(noise, error);
  return value(lo) + std::log((mass - delta) / weighted);
}

}  // namespace

EpsilonResult prv_epsilon(const std::vector<SgmPhase>& phases, double delta, double eps_error, double delta_error) {
  return detail::prv_epsilon_by(phases, delta, eps_error, delta_error, PrvMethod::automatic);
}

EpsilonResult detail::prv_epsilon_by(const std::vector<SgmPhase>& phases, double delta, double eps_error,
                                     double delta_error, PrvMethod method) {
  check_phases(phases);
  check_delta(delta);
  AEGIS_CHECK(std::isfinite(eps_error) && eps_error > 0.0, "eps_error " << eps_error << " must be positive and finite");
  AEGIS_CHECK(delta_error >= 0.0 && delta_error <= delta / 2.0,
              "delta_error " << delta_error << " must be in [0, delta/2] = [0, " << delta / 2.0 << "]");
  if (delta_error == 0.0) delta_error = delta / 1000.0;
  EpsilonResult r;
  r.delta = delta;
  r.accountant = Accountant::Prv;
  r.eps_error = eps_error;
  r.delta_error = delta_error;
  std::vector<PrvPhase> active;
  std::vector<std::int64_t> steps;
  std::int64_t total_steps = 0;
  for (const SgmPhase& p : phases)
    if (p.steps > 0) {
      active.push_back({SubsampledGaussianPrv(p.sampling_rate, p.noise_multiplier), static_cast<double>(p.steps)});
      steps.push_back(p.steps);
      total_steps += p.steps;
    }
  if (active.empty()) return r;  // no step taken: ε = 0
  const auto t = static_cast<double>(total_steps);
  const double h = eps_error / std::sqrt(t / 2.0 * std::log(12.0 / delta_error));

  // Each step is truncated where its tails hold δ_error/(8T) (Remark 5.6), so all truncations
  // together drop at most δ_error/4.
  std::vector<DiscretePrv> parts;
  double shift = 0.0;
  std::int64_t per_step_cells = 0;
  for (std::size_t p = 0; p < active.size(); ++p) {
    const std::vector<PrvPhase> one{{active[p].prv, 1.0}};
    const double tail = delta_error / (8.0 * t);
    parts.push_back(
        discretize(active[p].prv, detail::lower_tail_bound(one, tail), detail::upper_tail_bound(one, tail), h));
    shift += static_cast<double>(steps[p]) * parts.back().shift;
    per_step_cells += static_cast<std::int64_t>(parts.back().mass.size());
  }
  // The window: the composed PRV lies in [lower, upper] but for δ_error/4; the rounding to the grid
  // moves it by at most ε_error but for a further δ_error-sized event (§5), hence the padding.
  const double lower = detail::lower_tail_bound(active, delta_error / 8.0);
  const double upper = detail::upper_tail_bound(active, delta_error / 8.0);
  const double pad = eps_error + 2.0 * h;
  // What lies beyond [inner_lower, inner_upper] (half the padding) is checked below: more than
  // δ_error there means the window is wrong and mass has wrapped around the circle.
  const double inner_lower = lower - pad / 2, inner_upper = upper + pad / 2;
  const double window_cells = (upper - lower + 2.0 * pad) / h;
  AEGIS_CHECK_AS(NumericError, window_cells < static_cast<double>(kMaxSpectralCells),
                 "PRV accounting of " << total_steps << " steps at eps_error " << eps_error << " needs a grid of "
                                      << window_cells
                                      << " points; raise eps_error (account --eps-error) or use the rdp accountant");
  const std::int64_t first = cell_of(lower - pad - shift, h), last = cell_of(upper + pad - shift, h);
  // Long compositions: a few hundred Fourier coefficients describe the composed pmf exactly
  // (prv_spectral.cpp). Short ones, or spectra that decay slowly: FFTs on a power-of-two circle.
  const auto cells = last - first + 1;
  detail::SpectralPrv spectral;
  const std::int64_t max_coefficients =
      std::max<std::int64_t>(64, static_cast<std::int64_t>(4e8 / static_cast<double>(per_step_cells)));
  const bool use_spectral = method != PrvMethod::fft && (method == PrvMethod::spectral || cells >= kSpectralFrom) &&
                            detail::compose_spectral(parts, steps, h, first, cells, max_coefficients, spectral);
  AEGIS_CHECK_AS(NumericError, use_spectral || method != PrvMethod::spectral,
                 "PRV spectrum of " << total_steps << " steps needs more than " << max_coefficients << " coefficients");
  double noise = 0.0, outside = 0.0;
  std::function<double(double)> epsilon_of;
  ComposedPrv composed;
  if (use_spectral) {
    // Mass outside [inner_lower, inner_upper]: 1 minus the difference of two tail sums.
    const auto cell_at_or_above = [&](double v) {
      return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil((v - spectral.shift) / h)) - first, 0, cells);
    };
    double mass_lo, mass_hi, unused, error_lo, error_hi;
    detail::spectral_tail(spectral, cell_at_or_above(inner_lower), mass_lo, unused, error_lo);
    detail::spectral_tail(spectral, cell_at_or_above(inner_upper), mass_hi, unused, error_hi);
    outside = 1.0 - (mass_lo - mass_hi);
    noise = error_lo + error_hi;
    epsilon_of = [&](double d) { return epsilon_at(spectral, d, noise); };
    // The bounds below are evaluated first only to size the noise, then again with it.
    epsilon_of(delta - delta_error);
    epsilon_of(delta + delta_error);
    epsilon_of(delta);
  } else {
    AEGIS_CHECK_AS(NumericError, cells <= kMaxGridPoints,
                   "PRV accounting of " << total_steps << " steps at eps_error " << eps_error << " needs a grid of "
                                        << cells << " points (at most " << kMaxGridPoints
                                        << "); raise eps_error (account --eps-error) or use the rdp accountant");
    std::size_t n = 2;
    while (static_cast<std::int64_t>(n) < cells) n <<= 1;
    composed = compose(parts, steps, h, first, n);
    // Rounding in the FFT and in z^T leaves smooth, low-frequency noise in the composed pmf,
    // growing ~T·1e-16, and tail sums such as δ̃ inherit it. The true pmf is non-negative, so twice
    // its negative mass estimates that noise.
    double negative_mass = 0.0;
    for (std::size_t m = 0; m < n; ++m) {
      if (composed.pmf[m] < 0.0) negative_mass -= composed.pmf[m];
      if (composed.value(m) < inner_lower || composed.value(m) > inner_upper) outside += composed.pmf[m];
    }
    noise = 2.0 * negative_mass;
    epsilon_of = [&](double d) { return epsilon_at(composed, d); };
  }
  // The noise widens the bounds like δ_error does; when it reaches δ/10, δ is not resolvable.
  AEGIS_CHECK_AS(NumericError, noise < delta / 10.0,
                 "delta " << delta << " is below what PRV accounting of " << total_steps
                          << " steps resolves in double precision (rounding noise " << noise
                          << "); use a larger delta or the rdp accountant");
  // The window's tails carry at most δ_error/4 by the Chernoff bounds (and rounding to the grid
  // moves little mass by more than pad/2); more there means mass wrapped around the circle and
  // the bounds below would not hold.
  AEGIS_CHECK_AS(NumericError, outside <= delta_error + noise,
                 "PRV composition left " << outside << " of its mass outside [" << inner_lower << ", " << inner_upper
                                         << "] (more than delta_error " << delta_error << ")");
  // §5: the true ε(δ) lies within [ε̃(δ + δ_error) − ε_error, ε̃(δ − δ_error) + ε_error].
  const double slack = delta_error + noise;
  r.epsilon_estimate = std::max(0.0, epsilon_of(delta));
  r.epsilon_upper = std::max(0.0, epsilon_of(delta - slack) + eps_error);
  r.epsilon_lower = std::max(0.0, epsilon_of(delta + slack) - eps_error);
  r.epsilon = r.epsilon_upper;
  return r;
}

}  // namespace aegis::privacy
