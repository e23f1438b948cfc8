// The CUDA-vs-CPU harness shared by the *Cuda suites. An op, written once as a closure over a
// BackendRun, runs on the CPU and then on CUDA device 0 with the same inputs (copied to the
// device); the outputs it registers are compared element by element with a tolerance written next
// to each output. Outputs the test allocates start poisoned (a NaN with a payload no arithmetic
// produces, or an integer sentinel), so that an element a kernel leaves unwritten fails on either
// device. A failure names the output, how many elements are out of tolerance, the worst one's index
// and coordinates, both values and their absolute and relative difference.
// Tests start with AEGIS_REQUIRE_GPU() (support/testing.h): without a usable GPU they skip.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace aegis::testing {

// Element counts for kernels whose size is free: one element, counts that leave a partial warp
// (32 lanes), a partial block (128, 256 or 512 threads) or a partial vector of 4 at the end, and
// large odd ones that need many blocks.
inline const std::vector<std::int64_t> kOddSizes = {1, 3, 17, 33, 255, 257, 1025, 4099, 100003};

// |cuda − cpu| ≤ atol + rtol·|cpu| for every element.
struct Tolerance {
  double rtol = 0.0;
  double atol = 0.0;
};
inline constexpr Tolerance kExact{0.0, 0.0};

// Compares `actual` (the CUDA result) with `expected` (the CPU result), both moved to the host:
// same shape and dtype, every element within `tol`, NaN where and only where the CPU has NaN, and
// no element still holding the poison of BackendRun::output.
::testing::AssertionResult matches(const Tensor& actual, const Tensor& expected, Tolerance tol,
                                   const std::string& name = "output");

// One side of a comparison: the device the op runs on, its inputs copied there and the outputs it
// registered, in order.
class BackendRun {
 public:
  explicit BackendRun(Device device) : m_device(device) {}
  Device device() const { return m_device; }

  // `host` copied to this run's device (on the CPU run, `host` itself).
  Tensor input(const Tensor& host) const;
  // A new tensor on this run's device, every element poisoned, registered as output `name` and
  // compared with tolerance `tol` after the op. For kernels that write into a caller's buffer.
  Tensor output(const std::string& name, const Shape& shape, Tolerance tol, DType dtype = DType::F32);
  // Registers a tensor the op made itself (a layer's result, a gradient) as output `name`.
  void check(const std::string& name, const Tensor& value, Tolerance tol);

  struct Output {
    std::string name;
    Tensor value;
    Tolerance tol;
  };
  const std::vector<Output>& outputs() const { return m_outputs; }

 private:
  Device m_device;
  std::vector<Output> m_outputs;
};

// A host vector as a 1-D tensor on the CPU, to register results that a test holds as vectors.
template <class T>
Tensor flat_tensor(const std::vector<T>& values) {
  return Tensor::from_vector(values, {static_cast<std::int64_t>(values.size())});
}

// Runs `op` on the CPU, then on CUDA device 0, and compares each output of the CUDA run with the
// CPU run's output of the same name, at the tolerance registered with it. Every mismatching output
// is reported, not only the first.
::testing::AssertionResult cuda_matches_cpu(const std::function<void(BackendRun&)>& op);

}  // namespace aegis::testing
