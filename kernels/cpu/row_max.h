// The largest of a row's values, for the max-shifted exponentials of softmax and cross-entropy
// (kernels/cpu/softmax.cpp, kernels/cpu/loss.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace aegis::kernels::cpu {

// Row maximum ignoring NaN (std::fmax drops a NaN operand); a NaN still reaches the caller's
// result through exp(NaN − m).
inline float row_max(const float* x, std::int64_t cols) {
  float m = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = 0; j < cols; ++j) m = std::fmax(m, x[j]);
  return m;
}

}  // namespace aegis::kernels::cpu
