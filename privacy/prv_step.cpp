// The PRV of one Poisson-subsampled Gaussian step, its tail bounds, and the FFT (privacy/prv_step.h).
#include "privacy/prv_step.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "privacy/accountant.h"

namespace aegis::privacy::detail {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kInf = std::numeric_limits<double>::infinity();

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

// λ for the lower-tail Chernoff bound: 2^(k/4), from ~1e-3 to 4096.
std::vector<double> lambda_grid() {
  std::vector<double> grid;
  for (int k = -40; k <= 48; ++k) grid.push_back(std::exp2(k / 4.0));
  return grid;
}

}  // namespace

double SubsampledGaussianPrv::support_min() const {
  return m_q < 1.0 ? std::log1p(-m_q) : -kInf;
}

double SubsampledGaussianPrv::output_at(double y) const {
  const double z = m_q < 1.0 ? std::log(std::expm1(y) + m_q) - std::log(m_q) : y;
  return m_sigma * m_sigma * z + 0.5;
}

// The loss at output x, without overflow where e^u is huge.
double SubsampledGaussianPrv::loss_at(double x) const {
  const double u = (2.0 * x - 1.0) / (2.0 * m_sigma * m_sigma);
  if (m_q == 1.0) return u;
  if (u > 30.0) return std::log(m_q) + u + std::log1p((1.0 - m_q) * std::exp(-u) / m_q);
  return std::log1p(m_q * std::expm1(u));
}

double SubsampledGaussianPrv::output_density(double x) const {
  const double a = x / m_sigma, b = (x - 1.0) / m_sigma;
  return (m_q * std::exp(-0.5 * b * b) + (1.0 - m_q) * std::exp(-0.5 * a * a)) / (m_sigma * std::sqrt(2.0 * kPi));
}

void SubsampledGaussianPrv::cdf_sf(double y, double& cdf, double& sf) const {
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

// Composite Gauss–Legendre over the output x ∈ (x(a), x(b)]. Beyond 40σ from both mixture centres
// the density is below e^(−800) and is dropped. Panels are narrow against both the Gaussian scale σ
// and the width σ² of the loss's bend near x = 1/2.
template <class G>
double SubsampledGaussianPrv::expectation(double a, double b, G g) const {
  static const GaussLegendre gl;
  double lo = -40.0 * m_sigma, hi = 1.0 + 40.0 * m_sigma;
  if (a > support_min()) lo = std::max(lo, output_at(a));
  if (b < kInf) hi = std::min(hi, output_at(b));
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
      panel += gl.weight[i] * g(loss_at(x)) * output_density(x);
    }
    total += 0.5 * step * panel;
  }
  return static_cast<double>(total);
}

double SubsampledGaussianPrv::partial_mean(double a, double b) const {
  return expectation(a, b, [](double y) { return y; });
}

double SubsampledGaussianPrv::log_mgf_negative(double lambda) const {
  if (m_q == 1.0) return lambda * (lambda - 1.0) / (2.0 * m_sigma * m_sigma);  // Y ∼ N(μ, 2μ), μ = 1/(2σ²)
  // e^(−λY) ≤ (1−q)^(−λ): log it out so that the integrand stays in range.
  const double cap = -lambda * support_min();
  const double e = expectation(-kInf, kInf, [&](double y) { return std::exp(-lambda * y - cap); });
  return e > 0.0 ? cap + std::log(e) : -kInf;
}

double upper_tail_bound(const std::vector<PrvPhase>& phases, double tail) {
  double best = kInf;
  for (double order : default_rdp_orders()) {
    double total = 0.0;
    for (const PrvPhase& p : phases)
      total += p.steps * rdp_sampled_gaussian(p.prv.sampling_rate(), p.prv.noise_multiplier(), order);
    best = std::min(best, total - std::log(tail) / (order - 1.0));
  }
  return best;
}

double lower_tail_bound(const std::vector<PrvPhase>& phases, double tail) {
  double floor = 0.0;
  for (const PrvPhase& p : phases) floor += p.steps * p.prv.support_min();
  double best = floor;
  for (double lambda : lambda_grid()) {
    double total = 0.0;
    for (const PrvPhase& p : phases) total += p.steps * p.prv.log_mgf_negative(lambda);
    const double bound = (std::log(tail) - total) / lambda;
    if (std::isfinite(bound)) best = std::max(best, bound);
  }
  return best;
}

Fft::Fft(std::size_t n) : m_n(n), m_twiddle(n / 2) {
  // w_k = e^(−2πik/N) from cos/sin of each angle (no recurrence, so errors stay O(ε·log N)),
  // the second quarter by the exact rotation w_(k+N/4) = −i·w_k.
  const std::size_t quarter = std::max<std::size_t>(n / 4, 1);
  for (std::size_t k = 0; k < quarter && k < n / 2; ++k) {
    const double angle = 2.0 * kPi * static_cast<double>(k) / static_cast<double>(n);
    m_twiddle[k] = cplx(std::cos(angle), -std::sin(angle));
    if (k + quarter < n / 2) m_twiddle[k + quarter] = cplx(m_twiddle[k].imag(), -m_twiddle[k].real());
  }
}

namespace {
// Products written out: std::complex's operator* checks for NaN/Inf on every call.
inline Fft::cplx mul(Fft::cplx w, Fft::cplx v) {
  return Fft::cplx(w.real() * v.real() - w.imag() * v.imag(), w.real() * v.imag() + w.imag() * v.real());
}
}  // namespace

void Fft::dif(cplx* a, std::size_t n) const {
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

void Fft::dit(cplx* a, std::size_t n) const {
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

}  // namespace aegis::privacy::detail
