#include "support/linear_problem.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "support/testing.h"

namespace aegis::testing {

namespace {

std::vector<float> floats(const Tensor& t) {
  return t.to(Device::cpu()).to_vector<float>();
}

}  // namespace

LinearProblem linear_problem(std::int64_t k, std::int64_t n, float offset, std::uint64_t seed, bool far_last,
                             std::int64_t pool_factor) {
  LinearProblem p;
  p.k = k;
  const std::int64_t d = p.d;
  p.w = floats(random_tensor({k, d}, seed, -1.0f, 1.0f));
  for (std::int64_t c = 0; c < k; ++c) {
    double centre = 0.0;
    for (std::int64_t j = 0; j < d; ++j) centre += 0.5 * p.w[c * d + j];
    p.b.push_back(static_cast<float>(offset - centre));
  }
  if (far_last) {
    std::fill(p.w.end() - d, p.w.end(), 0.0f);
    p.b.back() = offset - 10.0f;
  }
  nn::InitRng rng(0);
  auto linear = std::make_shared<nn::Linear>(d, k, rng);
  std::copy(p.w.begin(), p.w.end(), linear->weight().value().data<float>());
  std::copy(p.b.begin(), p.b.end(), linear->bias().value().data<float>());
  p.model = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::Flatten>(), linear});
  const std::vector<float> pool = floats(random_tensor({pool_factor * n, d}, seed + 1, 0.3f, 0.7f));
  std::vector<float> xs;
  std::vector<std::int32_t> ys;
  for (std::int64_t e = 0; e < pool_factor * n && static_cast<std::int64_t>(ys.size()) < n; ++e) {
    std::vector<double> z(static_cast<std::size_t>(k));
    for (std::int64_t c = 0; c < k; ++c) {
      z[c] = p.b[c];
      for (std::int64_t j = 0; j < d; ++j) z[c] += static_cast<double>(p.w[c * d + j]) * pool[e * d + j];
    }
    const std::int64_t y = std::max_element(z.begin(), z.end()) - z.begin();
    double linf = 1e30, l2 = 1e30, margin = 1e30;
    for (std::int64_t c = 0; c < k; ++c) {
      if (c == y) continue;
      double n1 = 0.0, n2 = 0.0;
      for (std::int64_t j = 0; j < d; ++j) {
        const double diff = static_cast<double>(p.w[y * d + j]) - p.w[c * d + j];
        n1 += std::fabs(diff);
        n2 += diff * diff;
      }
      margin = std::min(margin, z[y] - z[c]);
      linf = std::min(linf, (z[y] - z[c]) / n1);
      l2 = std::min(l2, (z[y] - z[c]) / std::sqrt(n2));
    }
    if (margin < 0.02 || l2 > 0.25) continue;
    xs.insert(xs.end(), pool.begin() + e * d, pool.begin() + (e + 1) * d);
    ys.push_back(static_cast<std::int32_t>(y));
    p.dist_linf.push_back(linf);
    p.dist_l2.push_back(l2);
  }
  EXPECT_EQ(static_cast<std::int64_t>(ys.size()), n);
  p.x = Tensor::from_vector(xs, {n, 1, 4, 6});
  p.labels = Tensor::from_vector(ys, {n});
  return p;
}

Tensor scaled(const std::vector<double>& dist, double factor) {
  std::vector<float> v;
  for (double dd : dist) v.push_back(static_cast<float>(dd * factor));
  return Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())});
}

}  // namespace aegis::testing
