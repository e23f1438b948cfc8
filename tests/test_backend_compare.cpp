// The CUDA-vs-CPU harness itself (support/backend_compare.h), on the CPU: its comparisons catch
// unwritten (poisoned) elements, NaN mismatches and values out of tolerance, and name the worst
// element; the *Cuda suites rely on it to fail when a kernel is wrong.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using testing::BackendRun;
using testing::kExact;
using testing::Tolerance;

std::string message_of(const ::testing::AssertionResult& r) {
  return r.message();
}

TEST(BackendCompare, ToleranceIsRelativePlusAbsolute) {
  const Tensor expected = Tensor::from_vector<float>({1.0f, -2.0f, 100.0f, 0.0f}, {4});
  const Tensor close = Tensor::from_vector<float>({1.0001f, -2.0002f, 100.01f, 1e-6f}, {4});
  EXPECT_TRUE(testing::matches(close, expected, {2e-4, 2e-6}));
  // 100.01 is 1e-4 relative: outside rtol 5e-5 even with the absolute 2e-6.
  EXPECT_FALSE(testing::matches(close, expected, {5e-5, 2e-6}));
  // Zero tolerance: equal values only.
  EXPECT_TRUE(testing::matches(expected, expected.clone(), kExact));
  EXPECT_FALSE(testing::matches(close, expected, kExact));
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor infs = Tensor::from_vector<float>({inf, -inf}, {2});
  EXPECT_TRUE(testing::matches(infs, infs.clone(), kExact));
  EXPECT_FALSE(testing::matches(Tensor::from_vector<float>({inf, inf}, {2}), infs, {1.0, 1.0}));
}

TEST(BackendCompare, ReportsTheWorstElementWithItsCoordinates) {
  std::vector<float> want(24, 0.5f), got(24, 0.5f);
  got[5] = 0.5001f;   // (0, 1, 1): a small miss
  got[17] = 0.75f;    // (1, 1, 1): the worst
  const auto r = testing::matches(Tensor::from_vector(got, {2, 3, 4}), Tensor::from_vector(want, {2, 3, 4}),
                                  {1e-6, 0.0}, "y");
  ASSERT_FALSE(r);
  const std::string m = message_of(r);
  EXPECT_NE(m.find("output 'y'"), std::string::npos) << m;
  EXPECT_NE(m.find("2 of 24 elements out of tolerance"), std::string::npos) << m;
  EXPECT_NE(m.find("the worst at 17 (1, 1, 1)"), std::string::npos) << m;
  EXPECT_NE(m.find("CUDA 0.75 vs CPU 0.5"), std::string::npos) << m;
  EXPECT_NE(m.find("relative 0.5"), std::string::npos) << m;
}

TEST(BackendCompare, NanMustMatchNan) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor with_nan = Tensor::from_vector<float>({1.0f, nan, 3.0f}, {3});
  EXPECT_TRUE(testing::matches(with_nan, with_nan.clone(), kExact));  // a computed NaN on both sides
  EXPECT_FALSE(testing::matches(with_nan, Tensor::from_vector<float>({1.0f, 2.0f, 3.0f}, {3}), {1.0, 1.0}));
  EXPECT_FALSE(testing::matches(Tensor::from_vector<float>({1.0f, 2.0f, 3.0f}, {3}), with_nan, {1.0, 1.0}));
}

TEST(BackendCompare, UnwrittenOutputsFailEvenWhenBothSidesMissThem) {
  for (DType dtype : {DType::F32, DType::F64, DType::I32, DType::I64}) {
    SCOPED_TRACE(dtype_name(dtype));
    BackendRun run(Device::cpu());
    Tensor out = run.output("out", {2, 5}, kExact, dtype);
    ASSERT_EQ(run.outputs().size(), 1u);
    EXPECT_EQ(run.outputs()[0].name, "out");
    // A "kernel" that writes all but element 7.
    Tensor written = Tensor::zeros({2, 5}, dtype);
    for (std::int64_t i = 0; i < 10; ++i) {
      if (i == 7) continue;
      Tensor one = Tensor::zeros({1}, dtype);
      one.fill(static_cast<double>(i));
      std::memcpy(static_cast<char*>(out.raw_data()) + i * dtype_size(dtype), one.raw_data(), dtype_size(dtype));
    }
    const auto r = testing::matches(out, out.clone(), kExact, "out");
    ASSERT_FALSE(r);
    EXPECT_NE(message_of(r).find("1 elements never written on CUDA (still poisoned), the first at 7 (1, 2)"),
              std::string::npos)
        << message_of(r);
    EXPECT_NE(message_of(r).find("never written on the CPU"), std::string::npos) << message_of(r);
    // Once every element is written the same output compares equal to itself.
    std::memcpy(static_cast<char*>(out.raw_data()) + 7 * dtype_size(dtype), written.raw_data(), dtype_size(dtype));
    EXPECT_TRUE(testing::matches(out, out.clone(), kExact));
  }
}

TEST(BackendCompare, ShapesDtypesAndDefinednessMustAgree) {
  const Tensor a = Tensor::zeros({2, 3});
  EXPECT_FALSE(testing::matches(a, Tensor::zeros({3, 2}), {1.0, 1.0}));
  EXPECT_FALSE(testing::matches(a, Tensor::zeros({2, 3}, DType::F64), {1.0, 1.0}));
  EXPECT_FALSE(testing::matches(Tensor(), a, {1.0, 1.0}));
  EXPECT_FALSE(testing::matches(a, Tensor(), {1.0, 1.0}));
  EXPECT_TRUE(testing::matches(Tensor(), Tensor(), kExact));  // an output neither device makes
}

TEST(BackendCompare, InputsAreCopiesOnTheRunsDevice) {
  const Tensor host = testing::random_tensor({7}, 3);
  const std::vector<float> before = host.to_vector<float>();
  BackendRun run(Device::cpu());
  Tensor in = run.input(host);
  EXPECT_EQ(in.to_vector<float>(), before);
  in.fill(0.0);  // an op that updates its input in place leaves the caller's tensor alone
  EXPECT_EQ(host.to_vector<float>(), before);
  run.check("made by the op", in, Tolerance{1e-6, 0.0});
  ASSERT_EQ(run.outputs().size(), 1u);
  EXPECT_EQ(run.outputs()[0].tol.rtol, 1e-6);
}

TEST(BackendCompare, OddSizesCoverPartialWarpsAndBlocks) {
  bool one = false, partial_warp = false, partial_block = false, large = false;
  for (std::int64_t n : testing::kOddSizes) {
    one = one || n == 1;
    partial_warp = partial_warp || (n > 32 && n % 32 != 0 && n < 64);
    partial_block = partial_block || (n > 256 && n % 256 != 0 && n % 2 == 1);
    large = large || n > 65536;
    EXPECT_NE(n % 4, 0) << n;  // never a whole number of float4 loads
  }
  EXPECT_TRUE(one && partial_warp && partial_block && large);
}

}  // namespace
}  // namespace aegis
