// Integer arithmetic on counts and sizes that come from users or files. A product or sum that
// would leave int64 throws InvalidArgument naming what was being computed, instead of wrapping
// (undefined behaviour for signed integers).
#pragma once

#include <cstdint>

#include "core/error.h"

namespace aegis {

// ⌈n / d⌉ for n ≥ 0 and d ≥ 1, without the n + d − 1 that overflows when d is large.
inline std::int64_t ceil_div(std::int64_t n, std::int64_t d) {
  return n / d + (n % d != 0 ? 1 : 0);
}

// a × b; `what` names the product in the error ("epochs × steps per epoch").
inline std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  AEGIS_CHECK(!__builtin_mul_overflow(a, b, &r), what << ": " << a << " × " << b << " does not fit in 64 bits");
  return r;
}

inline std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  AEGIS_CHECK(!__builtin_add_overflow(a, b, &r), what << ": " << a << " + " << b << " does not fit in 64 bits");
  return r;
}

}  // namespace aegis
