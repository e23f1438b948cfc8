#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/row_max.h"

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 14;  // elements; below this a thread team costs more than it saves

// log Σ_j exp(x_j − m) in double.
double log_sum_exp_shifted(const float* x, std::int64_t cols, float m) {
  double s = 0.0;
  for (std::int64_t j = 0; j < cols; ++j) s += std::exp(static_cast<double>(x[j]) - m);
  return std::log(s);
}

double log_floor(float p) {
  return std::log(static_cast<double>(std::max(p, kProbabilityFloor)));
}
}  // namespace

void softmax_forward(const float* x, float* y, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * cols;
    const float m = row_max(xi, cols);
    const double lse = log_sum_exp_shifted(xi, cols, m);
    for (std::int64_t j = 0; j < cols; ++j) y[i * cols + j] = static_cast<float>(std::exp(xi[j] - m - lse));
  }
}

void softmax_backward(const float* y, const float* gy, float* dx, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* yi = y + i * cols;
    const float* gi = gy + i * cols;
    double dot = 0.0;
    for (std::int64_t j = 0; j < cols; ++j) dot += static_cast<double>(gi[j]) * yi[j];
    for (std::int64_t j = 0; j < cols; ++j) dx[i * cols + j] = static_cast<float>(yi[j] * (gi[j] - dot));
  }
}

void log_softmax_forward(const float* x, float* y, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * cols;
    const float m = row_max(xi, cols);
    const double lse = log_sum_exp_shifted(xi, cols, m);
    // (x − m) first: it is exact in float32 near the maximum, where the probabilities live.
    for (std::int64_t j = 0; j < cols; ++j) y[i * cols + j] = static_cast<float>((xi[j] - m) - lse);
  }
}

void log_softmax_backward(const float* y, const float* gy, float* dx, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* yi = y + i * cols;
    const float* gi = gy + i * cols;
    double total = 0.0;
    for (std::int64_t j = 0; j < cols; ++j) total += gi[j];
    for (std::int64_t j = 0; j < cols; ++j)
      dx[i * cols + j] = static_cast<float>(gi[j] - std::exp(static_cast<double>(yi[j])) * total);
  }
}

void kl_div_forward(const float* p, const float* logq, float* out, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t i = 0; i < rows; ++i) {
    double s = 0.0;
    for (std::int64_t j = i * cols; j < (i + 1) * cols; ++j) s += p[j] * (log_floor(p[j]) - logq[j]);
    out[i] = static_cast<float>(s);
  }
}

void kl_div_backward(const float* p, const float* logq, const float* g, float* dp, float* dlogq, std::int64_t rows,
                     std::int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t i = 0; i < rows; ++i) {
    const double gi = g[i];
    for (std::int64_t j = i * cols; j < (i + 1) * cols; ++j) {
      if (dp) dp[j] = static_cast<float>(gi * (log_floor(p[j]) + 1.0 - logq[j]));
      if (dlogq) dlogq[j] = static_cast<float>(-gi * p[j]);
    }
  }
}

void entropy_forward(const float* p, float* out, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t i = 0; i < rows; ++i) {
    double s = 0.0;
    for (std::int64_t j = i * cols; j < (i + 1) * cols; ++j) s -= p[j] * log_floor(p[j]);
    out[i] = static_cast<float>(s);
  }
}

void entropy_backward(const float* p, const float* g, float* dp, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (std::int64_t i = 0; i < rows; ++i) {
    const double gi = g[i];
    for (std::int64_t j = i * cols; j < (i + 1) * cols; ++j) dp[j] = static_cast<float>(-gi * (log_floor(p[j]) + 1.0));
  }
}

void group_sum_rows(const float* x, float* out, float scale, std::int64_t groups, std::int64_t group,
                    std::int64_t cols) {
#pragma omp parallel for schedule(static) if (groups * group * cols > kParallelMin)
  for (std::int64_t b = 0; b < groups; ++b)
    for (std::int64_t j = 0; j < cols; ++j) {
      double s = 0.0;
      for (std::int64_t k = 0; k < group; ++k) s += x[(b * group + k) * cols + j];
      out[b * cols + j] = static_cast<float>(s * scale);
    }
}

void repeat_rows(const float* x, float* out, float scale, std::int64_t groups, std::int64_t group, std::int64_t cols) {
#pragma omp parallel for schedule(static) if (groups * group * cols > kParallelMin)
  for (std::int64_t r = 0; r < groups * group; ++r)
    for (std::int64_t j = 0; j < cols; ++j) out[r * cols + j] = x[(r / group) * cols + j] * scale;
}

}  // namespace aegis::kernels::cpu
