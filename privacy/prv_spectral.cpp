// Composition of PRVs through their Fourier coefficients, for long compositions (privacy/prv_step.h).
//
// On a circle of n cells of mesh h, the composed pmf of T steps has the coefficients
// C_k = Π_p z_(p,k)^(T_p), z_(p,k) = Σ_j m_(p,j)·e^(−2πikj/n). Its spread grows like √T while the
// circle is ~15 standard deviations long, so |C_k| ≈ e^(−(2πk/n)²·n²h²·Var/2) falls below e^(−745)
// after a few hundred k: the pmf is a short trigonometric sum. Computing only those coefficients,
// and the tail sums of §3's δ(ε) = E[(1 − e^(ε−Y))₊] in closed form (geometric series), replaces
// two FFTs of n points by (cells of one step) × K operations.
//
// Accuracy: z^T amplifies the relative error of z by T. Near k = 0, z ≈ 1, so 1 − z is summed
// directly from 1 − e^(−iθj) = 2s² + 2ics (s, c the sine and cosine of θj/2; the masses sum to 1)
// and z^T = exp(T·log1p(−(1 − z))); the error bound carried with each C_k follows these steps.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <complex>

#include "privacy/prv_step.h"

namespace aegis::privacy::detail {

namespace {

using cplx = std::complex<double>;
constexpr double kPi = 3.14159265358979323846;
constexpr long double kPiLd = 3.141592653589793238462643383279502884L;
constexpr double kEps = DBL_EPSILON;
constexpr long double kEpsLd = LDBL_EPSILON;
constexpr double kNegligible = -745.0;  // log of the smallest positive double
constexpr int kBlock = 64;              // cells per exactly computed angle

// The angle 2π·num/den reduced exactly in integers to (−π, π], so that its rounding error is
// relative to its size: ε·|angle| rather than ε·2π near angle 0⁻.
double reduced_angle(std::int64_t num, std::int64_t den) {
  std::int64_t r = num % den;
  if (r > den / 2) r -= den;
  if (r < -(den / 2)) r += den;
  return 2.0 * kPi * static_cast<double>(r) / static_cast<double>(den);
}

// e^(2πi·num/den).
cplx unit(std::int64_t num, std::int64_t den) {
  const double angle = reduced_angle(num, den);
  return {std::cos(angle), std::sin(angle)};
}

// 1 − e^(x + 2πi·num/den) for x ≤ 0 without cancellation: with s, c the sine and cosine of half
// the angle, the real part is −expm1(x) + 2e^x·s² (two non-negative terms).
cplx one_minus_exp(double x, std::int64_t num, std::int64_t den) {
  const cplx half = unit(num, 2 * den);
  const double ex = std::exp(x);
  return {-std::expm1(x) + 2.0 * ex * half.imag() * half.imag(), -2.0 * ex * half.imag() * half.real()};
}

// u = 1 − z_k of one phase at frequency k, and a bound on its error.
void one_minus_coefficient(const DiscretePrv& part, std::int64_t k, std::int64_t n, cplx& u, double& error) {
  // e^(iθj/2) = base(block)·offset(r) for j = first + kBlock·block + r, θ = 2πk/n.
  cplx offset[kBlock];
  for (int r = 0; r < kBlock; ++r) offset[r] = unit(k * r, 2 * n);
  const double span = kPi * static_cast<double>(k) * kBlock / static_cast<double>(n);
  // T·Δu is what reaches the result, so the sums run in long double (64-bit mantissa on x86; where
  // long double is double, kEpsLd says so and the bound below grows accordingly).
  long double re = 0.0L, im = 0.0L, angle_bound = 0.0L;
  const auto cells = static_cast<std::int64_t>(part.mass.size());
  for (std::int64_t start = 0; start < cells; start += kBlock) {
    const double base_angle = reduced_angle(k * (part.first + start), 2 * n);
    const double bc = std::cos(base_angle), bs = std::sin(base_angle);
    const double* m = part.mass.data() + start;
    const int len = static_cast<int>(std::min<std::int64_t>(kBlock, cells - start));
    long double block_re = 0.0L, block_im = 0.0L;
    double block_mass = 0.0;
    for (int r = 0; r < len; ++r) {
      const double c = bc * offset[r].real() - bs * offset[r].imag();
      const double sn = bc * offset[r].imag() + bs * offset[r].real();
      block_re += m[r] * sn * sn;
      block_im += m[r] * c * sn;
      block_mass += m[r];
    }
    re += block_re;
    im += block_im;
    angle_bound += block_mass * std::min(std::fabs(base_angle) + span, kPi);
  }
  u = cplx(static_cast<double>(2.0L * re), static_cast<double>(2.0L * im));
  // |Δs|, |Δc| ≤ 3ε·(angle bound) from cos/sin, the rounded angles and the product; the terms
  // 2s² and 2cs (|·| ≤ 2·angle) then carry at most 16ε times it. The long double sums add
  // (block + blocks)·ε_ld of Σ|terms|, and the result is rounded to double (ε of |u|).
  const long double sums = (kBlock + static_cast<long double>(cells) / kBlock + 2.0L) * kEpsLd;
  error = static_cast<double>((16.0L * kEps + 2.0L * sums) * angle_bound) + kEps * std::abs(u);
}

}  // namespace

bool compose_spectral(const std::vector<DiscretePrv>& parts, const std::vector<std::int64_t>& steps, double h,
                      std::int64_t first, std::int64_t n, std::int64_t max_coefficients, SpectralPrv& out) {
  out = SpectralPrv();
  out.n = n;
  out.first = first;
  out.h = h;
  for (std::size_t p = 0; p < parts.size(); ++p) out.shift += static_cast<double>(steps[p]) * parts[p].shift;
  out.coefficient.push_back(1.0);
  out.error.push_back(0.0);
  const std::int64_t confirm = 16;  // this many negligible coefficients in a row end the spectrum
  std::int64_t negligible_run = 0;
  for (std::int64_t k = 1; negligible_run < confirm; ++k) {
    if (k >= max_coefficients || 2 * k >= n) return false;
    cplx log_c = 0.0;
    double relative_error = 0.0;
    for (std::size_t p = 0; p < parts.size(); ++p) {
      cplx u;
      double u_error;
      one_minus_coefficient(parts[p], k, n, u, u_error);
      // log(1 − u) = ½·log1p(u_re² + u_im² − 2u_re) + i·atan2(−u_im, 1 − u_re).
      const double log_abs = 0.5 * std::log1p(u.real() * u.real() + u.imag() * u.imag() - 2.0 * u.real());
      const double arg = std::atan2(-u.imag(), 1.0 - u.real());
      const auto t = static_cast<double>(steps[p]);
      log_c += t * cplx(log_abs, arg);
      // |Δ log z| ≤ |Δu|/|z| (first order), times T; plus the rounding of log and of the product.
      relative_error += t * (u_error / std::exp(log_abs) + 4.0 * kEps * (std::fabs(log_abs) + std::fabs(arg) + 1.0));
    }
    if (log_c.real() < kNegligible) {
      ++negligible_run;
      continue;
    }
    // Coefficients skipped as negligible before this one stay in as zeros.
    out.coefficient.resize(static_cast<std::size_t>(k), 0.0);
    out.error.resize(static_cast<std::size_t>(k), 0.0);
    negligible_run = 0;
    const double magnitude = std::exp(log_c.real());
    out.coefficient.push_back(std::polar(magnitude, log_c.imag()));
    relative_error += 4.0 * kEps * (1.0 + std::abs(log_c));
    out.error.push_back(magnitude * std::expm1(std::min(relative_error, 1.0)) + DBL_MIN);
  }
  return true;
}

void spectral_tail(const SpectralPrv& prv, std::int64_t m, double& mass, double& weighted, double& error) {
  const std::int64_t a = prv.first + m, count = prv.n - m, n = prv.n;
  const double h = prv.h, inv_n = 1.0 / static_cast<double>(n);
  // Σ_{J=a}^{a+count−1} e^(iθJ) = e^(iθa)·(1 − e^(iθ·count))/(1 − e^(iθ)), and the same with
  // e^(−h(J − a)) folded in for the weighted sum (relative to e^(−v_a), so nothing overflows).
  long double mass_sum = static_cast<double>(count), weighted_sum = 0.0L;
  const double geometric0 = std::expm1(-h * static_cast<double>(count)) / std::expm1(-h);
  weighted_sum = geometric0;
  double error_sum = 0.0;
  for (std::size_t k = 1; k < prv.coefficient.size(); ++k) {
    const auto kk = static_cast<std::int64_t>(k);
    const cplx start = unit(kk * a, n);
    const cplx plain = start * one_minus_exp(0.0, kk * count, n) / one_minus_exp(0.0, kk, n);
    const cplx damped =
        start * one_minus_exp(-h * static_cast<double>(count), kk * count, n) / one_minus_exp(-h, kk, n);
    mass_sum += 2.0 * (prv.coefficient[k] * plain).real();
    weighted_sum += 2.0 * (prv.coefficient[k] * damped).real();
    error_sum += 2.0 * prv.error[k] * (std::abs(plain) + std::abs(damped));
  }
  mass = static_cast<double>(mass_sum) * inv_n;
  weighted = static_cast<double>(weighted_sum) * inv_n;
  error = error_sum * inv_n + 4.0 * kEps * std::fabs(mass);
}

}  // namespace aegis::privacy::detail
