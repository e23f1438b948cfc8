// Exact statistics behind randomized-smoothing certificates, in double precision:
//   normal_cdf(x)          Φ(x) = ½·erfc(−x/√2)
//   normal_quantile(p)     Φ⁻¹(p), p ∈ (0, 1), to full double precision
//   regularized_beta(x,a,b)  I_x(a, b), the Beta(a, b) CDF (continued fraction, Numerical Recipes §6.4 / Lentz)
//   beta_quantile(q, a, b)   the x with I_x(a, b) = q, by bisection (monotone, so exact to an ulp)
//   clopper_pearson_lower(k, n, α)  the one-sided (1 − α) Clopper-Pearson lower confidence bound on a
//       binomial proportion (Clopper & Pearson 1934): the α quantile of Beta(k, n − k + 1); 0 at k = 0,
//       α^{1/n} at k = n. Cohen et al. 2019 (Alg. 2, LOWERCONFBOUND) use exactly this bound.
//   binomial_test_two_sided(k, n)  p-value of the two-sided test of k successes in n Bernoulli(½)
//       trials (Cohen et al. 2019, Alg. 1, BINOMPVALUE): Σ of P[X = j] over all j no more likely than k,
//       which for p = ½ is min(1, 2·P[X ≥ max(k, n − k)]).
// Every function rejects arguments outside its domain with InvalidArgument.
#pragma once

#include <cstdint>

namespace aegis::certify {

double normal_cdf(double x);
double normal_quantile(double p);
double regularized_beta(double x, double a, double b);
double beta_quantile(double q, double a, double b);
double clopper_pearson_lower(std::int64_t k, std::int64_t n, double alpha);
// The one-sided (1 − α) Clopper-Pearson upper bound: the 1 − α quantile of Beta(k + 1, n − k);
// 1 at k = n, 1 − α^{1/n} at k = 0.
double clopper_pearson_upper(std::int64_t k, std::int64_t n, double alpha);
double binomial_test_two_sided(std::int64_t k, std::int64_t n);

}  // namespace aegis::certify
