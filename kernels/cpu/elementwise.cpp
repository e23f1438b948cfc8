#include "kernels/elementwise.h"

#include <cmath>

#include "kernels/cpu/fast_math.h"

namespace aegis::kernels::cpu {

namespace {
constexpr std::int64_t kParallelMin = 1 << 15;  // below this a thread team costs more than it saves
}

void fill(float* out, float value, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = value;
}

void add(const float* a, const float* b, float* out, std::int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void axpy(float alpha, const float* x, float* y, std::int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void scale(float alpha, float* x, std::int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

void activation_forward(Activation f, const float* x, float* y, std::int64_t n) {
  switch (f) {
    case Activation::ReLU:
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
      break;
    case Activation::Tanh:
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (std::int64_t i = 0; i < n; ++i) y[i] = fast::tanh(x[i]);
      break;
    case Activation::Sigmoid:
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (std::int64_t i = 0; i < n; ++i) y[i] = fast::sigmoid(x[i]);
      break;
    case Activation::Softplus:
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (std::int64_t i = 0; i < n; ++i) y[i] = fast::softplus(x[i]);
      break;
  }
}

void activation_backward(Activation f, const float* y, const float* dy, float* dx, std::int64_t n) {
  switch (f) {
    case Activation::ReLU:
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (std::int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
      break;
    case Activation::Tanh:
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (std::int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
      break;
    case Activation::Sigmoid:
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (std::int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
      break;
    case Activation::Softplus:
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (std::int64_t i = 0; i < n; ++i) dx[i] = dy[i] * fast::softplus_slope(y[i]);
      break;
  }
}

std::int64_t count_nonfinite(const float* x, std::int64_t n) {
  std::int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n > kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) bad += std::isfinite(x[i]) ? 0 : 1;
  return bad;
}

void count_nonfinite_into(const float* x, std::int64_t n, std::int64_t* counter) {
  *counter += count_nonfinite(x, n);
}

}  // namespace aegis::kernels::cpu
