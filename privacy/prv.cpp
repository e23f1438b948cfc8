// The PRV accountant: numerical composition of privacy loss random variables (Gopi, Lee,
// Wutschitz 2021, "Numerical Composition of Differential Privacy", NeurIPS; arXiv:2106.02848).
//
// One step of the Poisson-subsampled Gaussian mechanism (sensitivity 1 after scaling by the
// clipping norm) is dominated by the pair P = (1−q)·N(0,σ²) + q·N(1,σ²) and Q = N(0,σ²). Its
// privacy loss random variable (PRV) is Y = log(P(X)/Q(X)) with X ∼ P (the paper's Prop. B.1 and
// B.4; the direction Opacus and the authors' reference implementation use):
//   Y = log(1 − q + q·exp((2X − 1)/(2σ²))),   support (log(1−q), ∞).
// The loss is increasing in X, so the CDF is that of X at x(y) = σ²·log((e^y − 1 + q)/q) + 1/2:
//   F(y) = q·Φ((x(y) − 1)/σ) + (1−q)·Φ(x(y)/σ).
// For a composition, δ(ε) = E[(1 − e^(ε−Y))₊] with Y the sum of the per-step PRVs (Gopi et al.,
// §3), whose density is the convolution of theirs.
//
// The paper's algorithm: truncate each PRV to [−L, L], discretize it on a grid of mesh h (each
// cell's mass at its centre, then the grid shifted so that the discrete mean equals the
// truncated continuous mean), and convolve by FFT. Its error analysis (§5) gives the accuracy: with
//   h = ε_error / sqrt(T/2 · log(12/δ_error))   (T = total number of steps)
// and L large enough that the truncated tails carry less than δ_error (Remark 5.6, bounded via
// RDP; constants as in the authors' reference implementation), the discrete δ̃ satisfies
//   δ(ε + ε_error) − δ_error ≤ δ̃(ε) ≤ δ(ε − ε_error) + δ_error,
// so ε̃(δ + δ_error) − ε_error ≤ ε(δ) ≤ ε̃(δ − δ_error) + ε_error.
#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>

#include "privacy/accountant.h"
#include "runtime/error.h"

namespace aegis::privacy {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr std::int64_t kMaxGridPoints = std::int64_t{1} << 23;
using cplx = std::complex<double>;

// Φ(z) and 1 − Φ(z), each accurate in its own small tail.
double normal_cdf(double z) {
  return 0.5 * std::erfc(-z / std::sqrt(2.0));
}
double normal_sf(double z) {
  return 0.5 * std::erfc(z / std::sqrt(2.0));
}

// Gauss–Legendre nodes and weights on [−1, 1] (Abramowitz & Stegun 25.4.29): the roots of P_n by
// Newton's method from cos(π(i + 3/4)/(n + 1/2)), and w_i = 2/((1 − x_i²)·P_n'(x_i)²).
struct GaussLegendre {
  static constexpr int n = 10;
  double node[n], weight[n];
  GaussLegendre() {
    for (int i = 0; i < n; ++i) {
      double x = std::cos(kPi * (i + 0.75) / (n + 0.5));
      double dp = 1.0;
      for (int iter = 0; iter < 100; ++iter) {
        double p0 = 1.0, p1 = x;  // P_0, P_1, then the three-term recurrence up to P_n
        for (int k = 2; k <= n; ++k) {
          const double pk = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
          p0 = p1;
          p1 = pk;
        }
        dp = n * (x * p1 - p0) / (x * x - 1.0);
        const double dx = p1 / dp;
        x -= dx;
        if (std::fabs(dx) < 1e-16) break;
      }
      node[i] = x;
      weight[i] = 2.0 / ((1.0 - x * x) * dp * dp);
    }
  }
};

// The PRV of one step of the Poisson-subsampled Gaussian mechanism (see the file comment).
class SubsampledGaussianPrv {
 public:
  SubsampledGaussianPrv(double q, double sigma) : m_q(q), m_sigma(sigma) {}

  // Y > log(1−q) almost surely; −∞ for q = 1 (the plain Gaussian PRV is itself Gaussian).
  double support_min() const { return m_q < 1.0 ? std::log1p(-m_q) : -std::numeric_limits<double>::infinity(); }
  // The output x at which the loss equals y (y > support_min()).
  double output_at(double y) const {
    const double z = m_q < 1.0 ? std::log(std::expm1(y) + m_q) - std::log(m_q) : y;
    return m_sigma * m_sigma * z + 0.5;
  }
  // The loss at output x, without overflow where e^u is huge.
  double loss_at(double x) const {
    const double u = (2.0 * x - 1.0) / (2.0 * m_sigma * m_sigma);
    if (m_q == 1.0) return u;
    if (u > 30.0) return std::log(m_q) + u + std::log1p((1.0 - m_q) * std::exp(-u) / m_q);
    return std::log1p(m_q * std::expm1(u));
  }
  // Density of X under P.
  double output_density(double x) const {
    const double a = x / m_sigma, b = (x - 1.0) / m_sigma;
    return (m_q * std::exp(-0.5 * b * b) + (1.0 - m_q) * std::exp(-0.5 * a * a)) / (m_sigma * std::sqrt(2.0 * kPi));
  }
  // F(y) and 1 − F(y); the one computed directly is the smaller (≲ 0.6), the other is 1 minus it.
  void cdf_sf(double y, double& cdf, double& sf) const {
    if (y <= support_min()) {
      cdf = 0.0;
      sf = 1.0;
      return;
    }
    const double x = output_at(y);
    if (x <= 0.5) {
      cdf = m_q * normal_cdf((x - 1.0) / m_sigma) + (1.0 - m_q) * normal_cdf(x / m_sigma);
      sf = 1.0 - cdf;
    } else {
      sf = m_q * normal_sf((x - 1.0) / m_sigma) + (1.0 - m_q) * normal_sf(x / m_sigma);
      cdf = 1.0 - sf;
    }
  }
  // E[Y · 1{a < Y ≤ b}], integrated over the output x ∈ (x(a), x(b)] with composite Gauss–Legendre.
  // Beyond 40σ from both mixture centres the density is below e^(−800) and is dropped. Panels are
  // narrow against both the Gaussian scale σ and the width σ² of the loss's bend near x = z0.
  double partial_mean(double a, double b) const {
    static const GaussLegendre gl;
    double lo = -40.0 * m_sigma, hi = 1.0 + 40.0 * m_sigma;
    if (a > support_min()) lo = std::max(lo, output_at(a));
    hi = std::min(hi, output_at(b));
    if (!(hi > lo)) return 0.0;
    const double width = std::min(m_sigma, m_sigma * m_sigma) / 4.0;
    const auto panels = static_cast<std::int64_t>(std::min(200000.0, std::ceil((hi - lo) / width)));
    const double step = (hi - lo) / static_cast<double>(panels);
    long double total = 0.0L;
    for (std::int64_t p = 0; p < panels; ++p) {
      const double mid = lo + (static_cast<double>(p) + 0.5) * step;
      double panel = 0.0;
      for (int i = 0; i < GaussLegendre::n; ++i) {
        const double x = mid + 0.5 * step * gl.node[i];
        panel += gl.weight[i] * loss_at(x) * output_density(x);
      }
      total += 0.5 * step * panel;
    }
    return static_cast<double>(total);
  }

 private:
  double m_q, m_sigma;
};

// Radix-2 FFT of size N = 2^k, X_j = Σ_n x_n·e^(−2πi·jn/N), in two halves that never reorder
// the data: the forward transform is decimation in frequency (natural order in, bit-reversed
// order out) and the inverse is decimation in time (bit-reversed in, natural out), the exact
// transpose of the forward one. Composition only multiplies spectra elementwise, which does not
// care about the order, so no bit-reversal pass is needed. Both recurse depth-first: once a
// sub-transform fits in cache, all its stages run there.
class Fft {
 public:
  explicit Fft(std::size_t n) : m_n(n), m_twiddle(n / 2) {
    // w_k = e^(−2πik/N) from cos/sin of each angle (no recurrence, so errors stay O(ε·log N)),
    // the second quarter by the exact rotation w_(k+N/4) = −i·w_k.
    const std::size_t quarter = std::max<std::size_t>(n / 4, 1);
    for (std::size_t k = 0; k < quarter && k < n / 2; ++k) {
      const double angle = 2.0 * kPi * static_cast<double>(k) / static_cast<double>(n);
      m_twiddle[k] = cplx(std::cos(angle), -std::sin(angle));
      if (k + quarter < n / 2) m_twiddle[k + quarter] = cplx(m_twiddle[k].imag(), -m_twiddle[k].real());
    }
  }
  // Natural order in, bit-reversed order out.
  void forward(cplx* a) const { dif(a, m_n); }
  // Bit-reversed order in, natural order out, times N (unnormalized).
  void inverse(cplx* a) const { dit(a, m_n); }

 private:
  // Products written out: std::complex's operator* checks for NaN/Inf on every call.
  static cplx mul(cplx w, cplx v) {
    return cplx(w.real() * v.real() - w.imag() * v.imag(), w.real() * v.imag() + w.imag() * v.real());
  }
  void dif(cplx* a, std::size_t n) const {
    if (n < 2) return;
    const std::size_t half = n / 2, stride = m_n / n;
    for (std::size_t j = 0; j < half; ++j) {
      const cplx u = a[j], v = a[j + half];
      a[j] = u + v;
      a[j + half] = mul(m_twiddle[j * stride], u - v);
    }
    dif(a, half);
    dif(a + half, half);
  }
  void dit(cplx* a, std::size_t n) const {
    if (n < 2) return;
    const std::size_t half = n / 2, stride = m_n / n;
    dit(a, half);
    dit(a + half, half);
    for (std::size_t j = 0; j < half; ++j) {
      const cplx u = a[j], v = mul(std::conj(m_twiddle[j * stride]), a[j + half]);
      a[j] = u + v;
      a[j + half] = u - v;
    }
  }
  std::size_t m_n;
  std::vector<cplx> m_twiddle;
};

// The composed PRV on the grid v_m = (m − N/2)·h + shift, m = 0..N−1.
struct ComposedPrv {
  std::vector<double> pmf;
  double h = 0.0, shift = 0.0;
  double value(std::size_t m) const {
    return (static_cast<double>(m) - static_cast<double>(pmf.size() / 2)) * h + shift;
  }
};

// Gopi et al.'s algorithm: discretize every phase's PRV on one grid of n points, mesh h,
// and compose all of them with one inverse FFT of Π_j FFT(p_j)^(T_j).
ComposedPrv compose(const std::vector<SgmPhase>& phases, double h, std::size_t n) {
  const double half = static_cast<double>(n / 2);
  const double top_edge = (half - 0.5) * h;  // the grid's cells span [−(N/2 + 1/2)h, (N/2 − 1/2)h]
  const double bottom_edge = -(half + 0.5) * h;
  // Memory: ~40 bytes per grid point (twiddles, spectrum, and log|Π z^T| and arg Π z^T).
  std::vector<double> log_magnitude(n, 0.0), phase(n, 0.0);
  std::vector<cplx> spectrum(n);
  const Fft fft(n);
  double total_shift = 0.0;
  std::int64_t total_steps = 0;
  for (const SgmPhase& p : phases) {
    const SubsampledGaussianPrv prv(p.sampling_rate, p.noise_multiplier);
    long double mass = 0.0L, discrete_mean = 0.0L;
    double cdf_lo, sf_lo, cdf_hi, sf_hi;
    prv.cdf_sf(bottom_edge, cdf_lo, sf_lo);
    for (std::size_t i = 0; i < n; ++i) {
      prv.cdf_sf(bottom_edge + static_cast<double>(i + 1) * h, cdf_hi, sf_hi);
      // A difference of the smaller of F and 1 − F keeps each cell's mass accurate in both tails.
      const double m = cdf_hi <= 0.5 ? cdf_hi - cdf_lo : sf_lo - sf_hi;
      cdf_lo = cdf_hi;
      sf_lo = sf_hi;
      spectrum[i] = cplx(m, 0.0);
      mass += m;
      discrete_mean += static_cast<long double>(m) * ((static_cast<double>(i) - half) * h);
    }
    AEGIS_CHECK_AS(NumericError, mass > 0.5L,
                   "PRV of sampling rate " << p.sampling_rate << ", noise multiplier " << p.noise_multiplier
                                           << " has only " << static_cast<double>(mass) << " of its mass on the grid");
    // The paper's mean correction: shift this PRV's grid so that its discrete mean equals the
    // mean of the truncated continuous PRV (the error analysis of §5 relies on it).
    const double continuous_mean = prv.partial_mean(bottom_edge, top_edge) / static_cast<double>(mass);
    const double shift = continuous_mean - static_cast<double>(discrete_mean / mass);
    AEGIS_CHECK_AS(
        NumericError, std::fabs(shift) < h / 2,
        "PRV mean correction " << shift << " exceeds half the mesh " << h << "; the PRV is too narrow for this grid");
    total_shift += static_cast<double>(p.steps) * shift;
    total_steps += p.steps;
    const double inv_mass = 1.0 / static_cast<double>(mass);
    for (auto& c : spectrum) c *= inv_mass;
    fft.forward(spectrum.data());
    // FFT(p)^T in polar form: |z|^T = e^(T·log|z|), arg z^T = T·arg z.
    const auto steps = static_cast<double>(p.steps);
    for (std::size_t k = 0; k < n; ++k) {
      const double r = std::abs(spectrum[k]);
      log_magnitude[k] += r > 0.0 ? steps * std::log(r) : -std::numeric_limits<double>::infinity();
      phase[k] += steps * std::arg(spectrum[k]);
    }
  }
  for (std::size_t k = 0; k < n; ++k) spectrum[k] = std::polar(std::exp(log_magnitude[k]), phase[k]);
  fft.inverse(spectrum.data());
  // Index i on the grid means the value (i − N/2)·h, so circular index c of the T-fold sum means
  // (c − T·N/2)·h modulo N·h; the representative in [−N/2, N/2)·h sits at index c + (T−1)·N/2 mod N.
  ComposedPrv out;
  out.h = h;
  out.shift = total_shift;
  out.pmf = std::move(log_magnitude);  // no longer needed: reuse its memory
  const std::size_t offset = (total_steps % 2 == 0) ? n / 2 : 0;
  const double inv_n = 1.0 / static_cast<double>(n);
  for (std::size_t c = 0; c < n; ++c) out.pmf[(c + offset) % n] = spectrum[c].real() * inv_n;
  return out;
}

// ε of the discrete PRV at δ: on [v_{m−1}, v_m), δ(ε) = Σ_{i≥m} p_i (1 − e^(ε − v_i)) = D1 − e^ε·D2,
// decreasing in ε, so scan down from the top and invert on the interval that brackets δ.
double epsilon_at(const ComposedPrv& prv, double delta) {
  long double d1 = 0.0L, d2 = 0.0L;
  for (std::size_t m = prv.pmf.size(); m-- > 0;) {
    d1 += prv.pmf[m];
    d2 += static_cast<long double>(prv.pmf[m] * std::exp(-prv.value(m)));
    if (m > 0 && d1 - static_cast<long double>(std::exp(prv.value(m - 1))) * d2 < delta) continue;
    AEGIS_CHECK_AS(NumericError, m + 1 < prv.pmf.size(), "PRV epsilon lies at the top of the grid; domain too small");
    if (d1 <= delta) return -std::numeric_limits<double>::infinity();
    return static_cast<double>(std::log((d1 - delta) / d2));
  }
  return -std::numeric_limits<double>::infinity();
}

}  // namespace

EpsilonResult prv_epsilon(const std::vector<SgmPhase>& phases, double delta, double eps_error, double delta_error) {
  check_phases(phases);
  check_delta(delta);
  AEGIS_CHECK(std::isfinite(eps_error) && eps_error > 0.0, "eps_error " << eps_error << " must be positive and finite");
  AEGIS_CHECK(delta_error >= 0.0 && delta_error <= delta / 2.0,
              "delta_error " << delta_error << " must be in [0, delta/2] = [0, " << delta / 2.0 << "]");
  if (delta_error == 0.0) delta_error = delta / 1000.0;
  EpsilonResult r;
  r.delta = delta;
  r.accountant = "prv";
  std::vector<SgmPhase> active;
  std::int64_t total_steps = 0;
  for (const SgmPhase& p : phases)
    if (p.steps > 0) {
      active.push_back(p);
      total_steps += p.steps;
    }
  if (active.empty()) return r;  // no step taken: ε = 0

  // Remark 5.6: L bounds the tails of the composed PRV (RDP ε at δ_error/4) and of every single
  // step (RDP ε at δ_error/(8T)); the margin of 3 is the authors' reference implementation's.
  double domain = rdp_epsilon(active, delta_error / 4.0).epsilon;
  for (const SgmPhase& p : active)
    domain = std::max(domain, rdp_epsilon({{p.noise_multiplier, p.sampling_rate, 1}},
                                          delta_error / (8.0 * static_cast<double>(total_steps)))
                                  .epsilon);
  domain = std::max(domain, eps_error) + 3.0;
  const double h = eps_error / std::sqrt(static_cast<double>(total_steps) / 2.0 * std::log(12.0 / delta_error));
  const double needed = 2.0 * (std::ceil(domain / h) + 1.0);
  AEGIS_CHECK_AS(NumericError, needed <= static_cast<double>(kMaxGridPoints),
                 "PRV accounting of " << total_steps << " steps at eps_error " << eps_error << " needs a grid of "
                                      << needed << " points (at most " << kMaxGridPoints
                                      << "); raise eps_error or use the rdp accountant");
  std::size_t n = 2;
  while (static_cast<double>(n) < needed) n <<= 1;

  const ComposedPrv composed = compose(active, h, n);
  // Rounding in the FFT and in |z|^T leaves smooth, low-frequency noise in the composed pmf,
  // growing ~T·1e-16 (measured: 1e-13 at T = 10^3, 1e-10 at T = 10^6), and tail sums such as δ̃
  // inherit it. The true pmf is non-negative, so twice its negative mass estimates that noise;
  // it widens the bounds like δ_error does, and when it reaches δ/10, δ is not resolvable.
  double negative_mass = 0.0, outside = 0.0;
  for (std::size_t m = 0; m < n; ++m) {
    if (composed.pmf[m] < 0.0) negative_mass -= composed.pmf[m];
    if (std::fabs(composed.value(m) - composed.shift) > domain) outside += composed.pmf[m];
  }
  const double noise = 2.0 * negative_mass;
  AEGIS_CHECK_AS(NumericError, noise < delta / 10.0,
                 "delta " << delta << " is below what PRV accounting of " << total_steps
                          << " steps resolves in double precision (rounding noise " << noise
                          << "); use a larger delta or the rdp accountant");
  // The tails beyond ±L carry less than δ_error/4 by the choice of L; more there means mass
  // wrapped around the circular convolution and the bounds below would not hold.
  AEGIS_CHECK_AS(NumericError, outside <= delta_error + noise,
                 "PRV composition left " << outside << " of its mass beyond the domain ±" << domain
                                         << " (more than delta_error " << delta_error << ")");
  // §5: the true ε(δ) lies within [ε̃(δ + δ_error) − ε_error, ε̃(δ − δ_error) + ε_error].
  const double slack = delta_error + noise;
  r.epsilon_estimate = std::max(0.0, epsilon_at(composed, delta));
  r.epsilon_upper = std::max(0.0, epsilon_at(composed, delta - slack) + eps_error);
  r.epsilon_lower = std::max(0.0, epsilon_at(composed, delta + slack) - eps_error);
  r.epsilon = r.epsilon_upper;
  return r;
}

}  // namespace aegis::privacy
