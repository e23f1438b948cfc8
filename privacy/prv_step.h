// Building blocks of the PRV accountant (privacy/prv.cpp): the privacy loss random variable of one
// step of the Poisson-subsampled Gaussian mechanism, its moments and tail bounds, and the radix-2
// FFT that composes it. Internal to the accountant; the interface is privacy/accountant.h.
//
// One step (sensitivity 1 after scaling by the clipping norm) is dominated by the pair
// P = (1−q)·N(0,σ²) + q·N(1,σ²) and Q = N(0,σ²). Its privacy loss random variable (PRV) is
// Y = log(P(X)/Q(X)) with X ∼ P (Gopi, Lee, Wutschitz 2021, Prop. B.1 and B.4; the direction
// Opacus and the authors' reference implementation use):
//   Y = log(1 − q + q·exp((2X − 1)/(2σ²))),   support (log(1−q), ∞).
// The loss is increasing in X, so the CDF is that of X at x(y) = σ²·log((e^y − 1 + q)/q) + 1/2:
//   F(y) = q·Φ((x(y) − 1)/σ) + (1−q)·Φ(x(y)/σ).
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "privacy/accountant.h"

namespace aegis::privacy::detail {

class SubsampledGaussianPrv {
 public:
  SubsampledGaussianPrv(double q, double sigma) : m_q(q), m_sigma(sigma) {}

  double sampling_rate() const { return m_q; }
  double noise_multiplier() const { return m_sigma; }
  // Y > log(1−q) almost surely; −∞ for q = 1 (the plain Gaussian PRV is itself Gaussian).
  double support_min() const;
  // F(y) and 1 − F(y); the one computed directly is the smaller (≲ 0.6), the other is 1 minus it.
  void cdf_sf(double y, double& cdf, double& sf) const;
  // E[Y · 1{a < Y ≤ b}].
  double partial_mean(double a, double b) const;
  // log E[e^(−λY)] for λ > 0 (the cumulant generating function at −λ), +∞ where it overflows.
  double log_mgf_negative(double lambda) const;

 private:
  double output_at(double y) const;
  double loss_at(double x) const;
  double output_density(double x) const;
  // ∫ g(loss(x)) · P(x) dx over the outputs with loss in (a, b].
  template <class G>
  double expectation(double a, double b, G g) const;

  double m_q, m_sigma;
};

// One phase of the composition: `steps` copies of one PRV.
struct PrvPhase {
  SubsampledGaussianPrv prv;
  double steps;
};

// Chernoff bounds on the sum Y of all phases' PRVs: P(Y ≥ upper) ≤ tail and P(Y ≤ lower) ≤ tail.
// Upper: E[e^((α−1)Y)] = e^((α−1)·RDP(α)) per step (the definition of Rényi divergence), minimized
// over the default RDP orders. Lower: E[e^(−λY)] by quadrature (closed form for q = 1), maximized
// over λ on a geometric grid; never below the support's minimum.
double upper_tail_bound(const std::vector<PrvPhase>& phases, double tail);
double lower_tail_bound(const std::vector<PrvPhase>& phases, double tail);

// One phase's PRV on the cells j = first, first + 1, …, cell j holding the mass of
// [(j − 1/2)h, (j + 1/2)h) at the value j·h + shift; the masses sum to 1.
struct DiscretePrv {
  std::vector<double> mass;
  std::int64_t first = 0;
  double shift = 0.0;
};

// The composition of `steps[p]` copies of each parts[p] on a circle of n cells, represented by its
// Fourier coefficients C_0 … C_K (C_(n−k) = conj(C_k), all others below e^(−745)): the pmf at cell
// J is (1/n)·(C_0 + 2·Re Σ_k C_k·e^(2πikJ/n)), and tail sums have closed forms (prv_spectral.cpp).
// Composed cells J = first … first + n − 1 hold the values J·h + shift.
struct SpectralPrv {
  std::vector<std::complex<double>> coefficient;
  std::vector<double> error;  // a bound on |computed − exact| of each coefficient
  std::int64_t n = 0, first = 0;
  double h = 0.0, shift = 0.0;
};

// False, leaving `out` unspecified, when the spectrum needs more than max_coefficients terms (few
// steps: the composed pmf is not smooth on the scale of the circle) and the FFT is the better tool.
bool compose_spectral(const std::vector<DiscretePrv>& parts, const std::vector<std::int64_t>& steps, double h,
                      std::int64_t first, std::int64_t n, std::int64_t max_coefficients, SpectralPrv& out);

// With a = first + m: Σ_{J ≥ a} p_J (mass) and Σ_{J ≥ a} p_J·e^(−(v_J − v_a)) (weighted), with
// `error` bounding the error of mass − e^(−h)·weighted.
void spectral_tail(const SpectralPrv& prv, std::int64_t m, double& mass, double& weighted, double& error);

// prv_epsilon with the composition method forced (tests): automatic chooses the spectral path for
// circles of 2^18 cells and more when the spectrum is short enough, the FFT otherwise.
enum class PrvMethod { automatic, fft, spectral };
EpsilonResult prv_epsilon_by(const std::vector<SgmPhase>& phases, double delta, double eps_error, double delta_error,
                             PrvMethod method);

// Radix-2 FFT of size N = 2^k, X_j = Σ_n x_n·e^(−2πi·jn/N), in two halves that never reorder
// the data: the forward transform is decimation in frequency (natural order in, bit-reversed
// order out) and the inverse is decimation in time (bit-reversed in, natural out), the exact
// transpose of the forward one. Composition only multiplies spectra elementwise, which does not
// care about the order, so no bit-reversal pass is needed. Both recurse depth-first: once a
// sub-transform fits in cache, all its stages run there.
class Fft {
 public:
  using cplx = std::complex<double>;
  explicit Fft(std::size_t n);
  // Natural order in, bit-reversed order out.
  void forward(cplx* a) const { dif(a, m_n); }
  // Bit-reversed order in, natural order out, times N (unnormalized).
  void inverse(cplx* a) const { dit(a, m_n); }

 private:
  void dif(cplx* a, std::size_t n) const;
  void dit(cplx* a, std::size_t n) const;
  std::size_t m_n;
  std::vector<cplx> m_twiddle;
};

}  // namespace aegis::privacy::detail
