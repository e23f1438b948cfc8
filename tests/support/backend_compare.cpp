#include "support/backend_compare.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>

namespace aegis::testing {
namespace {

// Quiet NaNs with payloads that neither the CPU nor the GPU produces from arithmetic (they make
// 0x7fc00000/0xffc00000 and 0x7fffffff), and integer sentinels.
constexpr std::uint32_t kPoisonF32 = 0x7fc0dead;
constexpr std::uint64_t kPoisonF64 = 0x7ff80000deadbeefULL;
constexpr std::int32_t kPoisonI32 = std::numeric_limits<std::int32_t>::min() + 0x0dead;
constexpr std::int64_t kPoisonI64 = std::numeric_limits<std::int64_t>::min() + 0x0deadbeef;

void fill_poison(Tensor& host) {
  const std::int64_t n = host.numel();
  switch (host.dtype()) {
    case DType::F32: {
      float v;
      std::memcpy(&v, &kPoisonF32, sizeof v);
      std::fill(host.data<float>(), host.data<float>() + n, v);
      break;
    }
    case DType::F64: {
      double v;
      std::memcpy(&v, &kPoisonF64, sizeof v);
      std::fill(host.data<double>(), host.data<double>() + n, v);
      break;
    }
    case DType::I32: std::fill(host.data<std::int32_t>(), host.data<std::int32_t>() + n, kPoisonI32); break;
    case DType::I64: std::fill(host.data<std::int64_t>(), host.data<std::int64_t>() + n, kPoisonI64); break;
  }
}

// The elements of a host tensor as doubles, and whether each still holds the poison.
struct Elements {
  std::vector<double> value;
  std::vector<bool> poisoned;
};
Elements elements(const Tensor& host) {
  const std::size_t n = static_cast<std::size_t>(host.numel());
  Elements out{std::vector<double>(n), std::vector<bool>(n)};
  for (std::size_t i = 0; i < n; ++i) {
    switch (host.dtype()) {
      case DType::F32: {
        const float v = host.data<float>()[i];
        std::uint32_t bits;
        std::memcpy(&bits, &v, sizeof bits);
        out.value[i] = v;
        out.poisoned[i] = bits == kPoisonF32;
        break;
      }
      case DType::F64: {
        const double v = host.data<double>()[i];
        std::uint64_t bits;
        std::memcpy(&bits, &v, sizeof bits);
        out.value[i] = v;
        out.poisoned[i] = bits == kPoisonF64;
        break;
      }
      case DType::I32:
        out.value[i] = host.data<std::int32_t>()[i];
        out.poisoned[i] = host.data<std::int32_t>()[i] == kPoisonI32;
        break;
      case DType::I64:
        out.value[i] = static_cast<double>(host.data<std::int64_t>()[i]);
        out.poisoned[i] = host.data<std::int64_t>()[i] == kPoisonI64;
        break;
    }
  }
  return out;
}

// "517 (0, 3, 4, 10)": a flat index and its coordinates in `shape`.
std::string where(std::size_t index, const Shape& shape) {
  std::ostringstream os;
  os << index;
  if (shape.size() > 1) {
    std::vector<std::int64_t> coords(shape.size());
    std::int64_t rest = static_cast<std::int64_t>(index);
    for (std::size_t d = shape.size(); d-- > 0;) {
      coords[d] = shape[d] > 0 ? rest % shape[d] : 0;
      rest = shape[d] > 0 ? rest / shape[d] : 0;
    }
    os << " (";
    for (std::size_t d = 0; d < coords.size(); ++d) os << (d ? ", " : "") << coords[d];
    os << ")";
  }
  return os.str();
}

// How far `a` is from `e` in units of the allowed error: ≤ 1 passes; NaN against a number and any
// difference under a zero tolerance count as infinitely far.
double excess(double a, double e, Tolerance tol) {
  if (std::isnan(a) || std::isnan(e)) return std::isnan(a) && std::isnan(e) ? 0.0 : HUGE_VAL;
  if (a == e) return 0.0;  // also equal infinities
  const double allowed = tol.atol + tol.rtol * std::fabs(e);
  const double diff = std::fabs(a - e);
  if (allowed == 0.0 || std::isinf(diff)) return HUGE_VAL;
  return diff / allowed;
}

}  // namespace

::testing::AssertionResult matches(const Tensor& actual, const Tensor& expected, Tolerance tol,
                                   const std::string& name) {
  if (!actual.defined() || !expected.defined()) {
    if (actual.defined() == expected.defined()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "output '" << name << "' is " << (actual.defined() ? "" : "not ")
                                         << "defined on CUDA but " << (expected.defined() ? "" : "not ")
                                         << "on the CPU";
  }
  if (actual.shape() != expected.shape() || actual.dtype() != expected.dtype())
    return ::testing::AssertionFailure() << "output '" << name << "': CUDA " << actual.describe() << " vs CPU "
                                         << expected.describe();
  const Tensor a_host = actual.to(Device::cpu()), e_host = expected.to(Device::cpu());
  const Elements a = elements(a_host), e = elements(e_host);
  const Shape& shape = expected.shape();
  std::size_t unwritten_cuda = 0, unwritten_cpu = 0, first_cuda = 0, first_cpu = 0, out_of_tolerance = 0, worst = 0;
  double worst_excess = 0.0;
  for (std::size_t i = 0; i < a.value.size(); ++i) {
    if (a.poisoned[i] && unwritten_cuda++ == 0) first_cuda = i;
    if (e.poisoned[i] && unwritten_cpu++ == 0) first_cpu = i;
    const double x = excess(a.value[i], e.value[i], tol);
    if (x > 1.0) ++out_of_tolerance;
    if (x > worst_excess) {
      worst_excess = x;
      worst = i;
    }
  }
  if (unwritten_cuda == 0 && unwritten_cpu == 0 && out_of_tolerance == 0) return ::testing::AssertionSuccess();
  ::testing::AssertionResult failure = ::testing::AssertionFailure();
  failure << "output '" << name << "' " << expected.describe() << ":";
  if (unwritten_cuda)
    failure << " " << unwritten_cuda << " elements never written on CUDA (still poisoned), the first at "
            << where(first_cuda, shape) << ";";
  if (unwritten_cpu)
    failure << " " << unwritten_cpu << " elements never written on the CPU (still poisoned), the first at "
            << where(first_cpu, shape) << ";";
  if (out_of_tolerance) {
    const double av = a.value[worst], ev = e.value[worst];
    failure << " " << out_of_tolerance << " of " << a.value.size() << " elements out of tolerance (rtol " << tol.rtol
            << ", atol " << tol.atol << "); the worst at " << where(worst, shape) << std::setprecision(9)
            << ": CUDA " << av << " vs CPU " << ev << std::setprecision(3) << " (|difference| " << std::fabs(av - ev)
            << ", relative " << std::fabs(av - ev) / std::fabs(ev) << ")";
  }
  return failure;
}

Tensor BackendRun::input(const Tensor& host) const {
  return m_device.is_cpu() ? host.clone() : host.to(m_device);
}

Tensor BackendRun::output(const std::string& name, const Shape& shape, Tolerance tol, DType dtype) {
  Tensor host = Tensor::empty(shape, dtype);
  fill_poison(host);
  Tensor value = m_device.is_cpu() ? host : host.to(m_device);
  m_outputs.push_back({name, value, tol});
  return value;
}

void BackendRun::check(const std::string& name, const Tensor& value, Tolerance tol) {
  m_outputs.push_back({name, value, tol});
}

::testing::AssertionResult cuda_matches_cpu(const std::function<void(BackendRun&)>& op) {
  BackendRun cpu(Device::cpu()), cuda(Device::cuda(0));
  op(cpu);
  op(cuda);
  const auto& expected = cpu.outputs();
  const auto& actual = cuda.outputs();
  if (expected.empty()) return ::testing::AssertionFailure() << "the op registered no outputs to compare";
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure() << "the CPU run registered " << expected.size() << " outputs, the CUDA run "
                                         << actual.size();
  bool ok = true;
  ::testing::AssertionResult failure = ::testing::AssertionFailure();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (actual[i].name != expected[i].name) {
      failure << "\noutput " << i << " is '" << expected[i].name << "' on the CPU and '" << actual[i].name
              << "' on CUDA";
      ok = false;
      continue;
    }
    const ::testing::AssertionResult r = matches(actual[i].value, expected[i].value, actual[i].tol, actual[i].name);
    if (!r) {
      failure << "\n" << r.message();
      ok = false;
    }
  }
  return ok ? ::testing::AssertionSuccess() : failure;
}

}  // namespace aegis::testing
