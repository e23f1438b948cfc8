#include "core/math_precision.h"

#include "core/error.h"

namespace aegis {

namespace {
// One setting per host thread: each thread issues its own work on its own stream.
thread_local MathPrecision t_precision = MathPrecision::Fp32;
thread_local std::int64_t* t_overflow_counter = nullptr;

constexpr MathPrecision kAll[] = {MathPrecision::Fp32, MathPrecision::Tf32, MathPrecision::Bf16, MathPrecision::Fp16};
}  // namespace

const char* math_precision_name(MathPrecision precision) noexcept {
  switch (precision) {
    case MathPrecision::Fp32:
      return "fp32";
    case MathPrecision::Tf32:
      return "tf32";
    case MathPrecision::Bf16:
      return "bf16";
    case MathPrecision::Fp16:
      return "fp16";
  }
  return "unknown";
}

MathPrecision parse_math_precision(const std::string& name) {
  for (MathPrecision p : kAll)
    if (name == math_precision_name(p)) return p;
  AEGIS_THROW(InvalidArgument, "precision '" << name << "' is not one of fp32, tf32, bf16, fp16");
}

MathPrecision math_precision() noexcept {
  return t_precision;
}

std::int64_t* math_overflow_counter() noexcept {
  return t_overflow_counter;
}

MathPrecisionScope::MathPrecisionScope(MathPrecision precision, std::int64_t* d_overflow_count)
    : m_previous(t_precision), m_previous_counter(t_overflow_counter) {
  t_precision = precision;
  t_overflow_counter = d_overflow_count;
}

MathPrecisionScope::~MathPrecisionScope() {
  t_precision = m_previous;
  t_overflow_counter = m_previous_counter;
}

}  // namespace aegis
