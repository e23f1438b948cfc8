#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nn/functional.h"
#include "kernels/elementwise.h"
#include "runtime/dispatch.h"
#include "runtime/autograd.h"
#include "core/config.h"
#include "core/cuda_backend.h"
#include "runtime/ops.h"
#include "core/philox.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

TEST(Philox, KnownAnswerVectors) {
  // Salmon et al. 2011, Random123 known-answer vectors for philox4x32 with 10 rounds:
  // counter (4 words), key (2 words) → output (4 words).
  struct Kat {
    philox::U32x4 ctr;
    std::uint32_t k0, k1;
    std::uint32_t out[4];
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Kat& k : kats) {
    const philox::U32x4 r = philox::philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], k.out[i]) << "word " << i;
  }
}

TEST(Philox, KeyedDrawsAreReproducibleAndDistinct) {
  const philox::Key a{42, philox::kPurposeDpNoise, 7};
  philox::Key b = a;
  b.step = 8;
  philox::Key c = a;
  c.purpose = philox::kPurposeSampling;
  EXPECT_EQ(philox::normal(a, 123), philox::normal(a, 123));
  EXPECT_NE(philox::normal(a, 123), philox::normal(b, 123));
  EXPECT_NE(philox::normal(a, 123), philox::normal(c, 123));
  EXPECT_NE(philox::normal(a, 123), philox::normal(a, 124));
}

TEST(Philox, NormalMomentsOverMillionDraws) {
  // 10^6 draws: the sample mean has sd 1e-3 and the sample variance sd sqrt(2/n) ≈ 1.4e-3; the
  // bounds are 5 standard deviations.
  const std::int64_t n = 1000000;
  Tensor t = Tensor::empty({n});
  ops::fill_normal(t, philox::Key{1234, philox::kPurposeGeneric, 0}, 0.0f, 1.0f);
  double s = 0, s2 = 0, s4 = 0;
  for (float v : t.to_vector<float>()) {
    s += v;
    s2 += double(v) * v;
    s4 += double(v) * v * v * v;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 5e-3);
  EXPECT_NEAR(var, 1.0, 7e-3);
  EXPECT_NEAR(s4 / n, 3.0, 0.05);  // kurtosis: sd of the 4th-moment mean is sqrt(96/n) ≈ 0.01
}

TEST(Philox, UniformRangeAndMean) {
  const std::int64_t n = 1 << 20;
  Tensor t = Tensor::empty({n});
  ops::fill_uniform(t, philox::Key{9, philox::kPurposeGeneric, 0}, -2.0f, 3.0f);
  double s = 0;
  for (float v : t.to_vector<float>()) {
    ASSERT_GE(v, -2.0f);
    ASSERT_LT(v, 3.0f);
    s += v;
  }
  EXPECT_NEAR(s / n, 0.5, 5 * 5.0 / std::sqrt(12.0 * n));
}

TEST(Tensor, ShapesViewsAndCopies) {
  Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.size(-1), 3);
  Tensor r = t.reshape({3, -1});
  EXPECT_EQ(r.shape(), (Shape{3, 2}));
  EXPECT_EQ(r.raw_data(), t.raw_data());  // a view
  Tensor row = t.rows(1, 2);
  EXPECT_EQ(row.to_vector<float>(), (std::vector<float>{4, 5, 6}));
  Tensor c = t.clone();
  c.fill(7.0);
  EXPECT_EQ(t.to_vector<float>()[0], 1.0f);
  EXPECT_THROW(t.reshape({4, 2}), ShapeError);
  EXPECT_THROW(t.rows(1, 3), ShapeError);
  EXPECT_THROW(t.data<double>(), ShapeError);
  EXPECT_THROW(Tensor::from_vector<float>({1, 2}, {3}), ShapeError);
}

TEST(Tensor, Int64HoldsCountsBeyond32Bits) {
  const std::vector<std::int64_t> v = {-3, 0, std::int64_t{1} << 40};
  Tensor t = Tensor::from_vector(v, {3});
  EXPECT_EQ(t.dtype(), DType::I64);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(t.describe(), "i64[3] on cpu");
  EXPECT_EQ(t.to_vector<std::int64_t>(), v);
  EXPECT_EQ(t.rows(2, 3).item(), 1099511627776.0);
  t.fill(5.0);
  EXPECT_EQ(t.to_vector<std::int64_t>(), (std::vector<std::int64_t>{5, 5, 5}));
  EXPECT_EQ(Tensor::zeros({2}, DType::I64).to_vector<std::int64_t>(), (std::vector<std::int64_t>{0, 0}));
}

TEST(Ops, CountNonfiniteEachCountsEveryTensor) {
  const Tensor a = Tensor::from_vector<float>({1.0f, NAN, INFINITY}, {3});
  const Tensor b = testing::random_tensor({1001}, 5);
  const Tensor c = Tensor::from_vector<float>({-INFINITY}, {1});
  EXPECT_EQ(ops::count_nonfinite_each({&a, &b, &c}), (std::vector<std::int64_t>{2, 0, 1}));
  EXPECT_TRUE(ops::count_nonfinite_each({}).empty());
  const Tensor labels = Tensor::from_vector<std::int32_t>({1}, {1});
  EXPECT_THROW(ops::count_nonfinite_each({&a, &labels}), ShapeError);
}

TEST(Tensor, WrapsForeignMemoryWithoutCopy) {
  std::vector<float> buffer{1.5f, 2.5f, 3.5f};
  bool released = false;
  {
    Tensor t = Tensor::from_blob(buffer.data(), {3}, DType::F32, Device::cpu(), [&](void*) { released = true; });
    EXPECT_EQ(t.data<float>(), buffer.data());
    t.data<float>()[1] = 9.0f;
  }
  EXPECT_TRUE(released);
  EXPECT_EQ(buffer[1], 9.0f);
}

TEST(Device, ChoiceAndErrors) {
  EXPECT_TRUE(choose_device("cpu").device.is_cpu());
  EXPECT_THROW(choose_device("tpu"), InvalidArgument);
  EXPECT_THROW(choose_device("cuda:x"), InvalidArgument);
  if (cuda_device_count() == 0) {
    EXPECT_THROW(choose_device("cuda"), DeviceError);
    const DeviceChoice c = choose_device("auto");
    EXPECT_TRUE(c.device.is_cpu());
    EXPECT_TRUE(c.fell_back);
    EXPECT_FALSE(c.reason.empty());
    EXPECT_THROW(Tensor::empty({2}, DType::F32, Device::cuda()), DeviceError);
  } else {
    EXPECT_TRUE(choose_device("auto").device.is_cuda());
  }
}

TEST(Ops, MatmulAgainstNaiveLoops) {
  for (auto [m, k, n] : {std::tuple{1, 1, 1}, {3, 5, 7}, {17, 33, 9}}) {
    Tensor a = testing::random_tensor({m, k}, 1), b = testing::random_tensor({n, k}, 2);
    Tensor c = ops::matmul(a, b, false, true);
    const auto av = a.to_vector<float>(), bv = b.to_vector<float>();
    std::vector<double> ref(static_cast<std::size_t>(m * n));
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j)
        for (int p = 0; p < k; ++p) ref[i * n + j] += double(av[i * k + p]) * bv[j * k + p];
    EXPECT_TRUE(testing::all_close(c, ref, 1e-5, 1e-5));  // float32 sums of ≤33 O(1) terms
  }
  EXPECT_THROW(ops::matmul(testing::random_tensor({2, 3}, 1), testing::random_tensor({2, 3}, 1)), ShapeError);
}

TEST(Ops, NonFiniteDetection) {
  Tensor t = Tensor::from_vector<float>({1.0f, NAN, 2.0f, INFINITY}, {4});
  EXPECT_EQ(ops::count_nonfinite(t), 2);
  EXPECT_THROW(ops::check_finite(t, "input"), NumericError);
}

TEST(Autograd, SharedSubexpressionAccumulates) {
  // y = x + x  ⇒  dy/dx = 2 everywhere (the node graph has a diamond).
  autograd::Var x(testing::random_tensor({4}, 3), true);
  autograd::Var y = nn::F::add(x, x);
  autograd::backward(y, Tensor::full({4}, 1.0));
  EXPECT_TRUE(testing::all_close(x.grad(), std::vector<double>(4, 2.0), 0, 1e-6));
}

TEST(Autograd, NoTapeWhenNothingRequiresGrad) {
  autograd::Var x(testing::random_tensor({2, 3}, 4), false);
  autograd::Var w(testing::random_tensor({5, 3}, 5), false);
  autograd::Var y = nn::F::linear(x, w, autograd::Var());
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.grad_fn(), nullptr);
  EXPECT_THROW(autograd::backward(y), InvalidArgument);
}

TEST(Autograd, InputOnlyGradientSkipsWeights) {
  autograd::Var x(testing::random_tensor({2, 3}, 4), true);
  autograd::Var w(testing::random_tensor({5, 3}, 5), false);
  autograd::Var b(testing::random_tensor({5}, 6), false);
  autograd::backward(testing::weighted_sum(nn::F::linear(x, w, b), 7));
  EXPECT_TRUE(x.has_grad());
  EXPECT_FALSE(w.has_grad());
  EXPECT_FALSE(b.has_grad());
}

TEST(Autograd, LinearAndActivationsMatchFiniteDifferences) {
  // ReLU's kink is closer than h = 1e-2 to some pre-activations; a smaller step keeps the
  // central difference on one side of it (float32 rounding then costs ~1e-4 relative).
  using ActFn = autograd::Var (*)(const autograd::Var&);
  for (auto [act_binding, h] : {std::pair<ActFn, double>{&nn::F::relu, 1e-3}, {&nn::F::tanh, 1e-2}, {&nn::F::sigmoid, 1e-2}}) {
    const ActFn act = act_binding;  // C++17 lambdas cannot capture a structured binding (clang refuses)
    std::vector<autograd::Var> in{autograd::Var(testing::random_tensor({3, 4}, 10), true),
                                  autograd::Var(testing::random_tensor({5, 4}, 11), true),
                                  autograd::Var(testing::random_tensor({5}, 12), true)};
    EXPECT_TRUE(testing::gradcheck(
        [act](const std::vector<autograd::Var>& v) { return testing::weighted_sum(act(nn::F::linear(v[0], v[1], v[2])), 13); },
        in, h));
  }
}

}  // namespace
}  // namespace aegis

namespace aegis {
namespace {

TEST(FastMath, ActivationsMatchLibmAcrossTheRange) {
  // The vectorized tanh/sigmoid of kernels/cpu/fast_math.h against double-precision libm over
  // [−40, 40] (saturation included) in steps that hit both tanh branches and the 0.625 seam.
  std::vector<float> xs;
  for (double x = -40.0; x <= 40.0; x += 0.00731) xs.push_back(static_cast<float>(x));
  for (float x : {0.0f, -0.0f, 0.625f, -0.625f, 1e-30f, 88.0f, -100.0f, 100.0f}) xs.push_back(x);
  const std::int64_t n = static_cast<std::int64_t>(xs.size());
  Tensor x = Tensor::from_vector(xs, {n});
  Tensor y = Tensor::empty({n});
  kernels::cpu::activation_forward(kernels::Activation::Tanh, x.data<float>(), y.data<float>(), n);
  std::vector<double> ref;
  for (float v : xs) ref.push_back(std::tanh(double(v)));
  // ≈2 ulp of float in the result, plus 1e-7 absolute where tanh crosses zero.
  EXPECT_TRUE(testing::all_close(y, ref, 3e-7, 1e-7));
  kernels::cpu::activation_forward(kernels::Activation::Sigmoid, x.data<float>(), y.data<float>(), n);
  ref.clear();
  for (float v : xs) ref.push_back(1.0 / (1.0 + std::exp(-double(v))));
  // Sigmoid goes to 0 for x → −∞: relative accuracy is what matters there (tiny atol).
  EXPECT_TRUE(testing::all_close(y, ref, 5e-7, 1e-30));
}

// ---- CUDA vs CPU: same keys and inputs, same results ----------------------------------------

TEST(RuntimeCuda, PhiloxFillsAreIdenticalOnBothDevices) {
  AEGIS_REQUIRE_GPU();
  const philox::Key key{77, philox::kPurposeDpNoise, 5};
  std::vector<std::int64_t> sizes = testing::kOddSizes;
  sizes.push_back((1 << 20) + 3);
  for (const std::int64_t n : sizes) {  // odd sizes: the last Philox block is partly used
    SCOPED_TRACE(n);
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      Tensor u = run.output("uniform", {n}, testing::kExact);  // integer arithmetic: exact
      ops::fill_uniform(u, key, -1.0f, 1.0f, 12345);
      // Box–Muller in double: libm and CUDA's log/sin/cos differ by ≤ 1 ulp of double, which
      // survives rounding to float only near a rounding boundary — allow 1 float ulp.
      Tensor z = run.output("normal", {n}, {2.4e-7, 1e-7});
      ops::fill_normal(z, key, 0.5f, 2.0f, 7);
    }));
  }
}

TEST(RuntimeCuda, ElementwiseBlasAndLinearMatchCpu) {
  AEGIS_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  for (auto act : {kernels::Activation::ReLU, kernels::Activation::Tanh, kernels::Activation::Sigmoid,
                   kernels::Activation::Softplus}) {
    for (const std::int64_t n : testing::kOddSizes) {
      SCOPED_TRACE(::testing::Message() << "activation " << static_cast<int>(act) << ", n = " << n);
      const Tensor x = testing::random_tensor({n}, 31, -6.0f, 6.0f);
      EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
        const Tensor d_x = run.input(x);
        // Two float implementations of tanh/exp, each within a few ulp of the true value.
        Tensor y = run.output("y", {n}, {1e-6, 1e-7});
        AEGIS_DISPATCH(run.device(), activation_forward(act, d_x.data<float>(), y.data<float>(), n));
      }));
    }
  }
  const Tensor a = testing::random_tensor({37, 129}, 32), b = testing::random_tensor({129, 65}, 33);
  EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
    const Tensor d_a = run.input(a), d_b = run.input(b);
    // Different summation orders over 129 terms of O(1): float32 rounding ~ sqrt(129)·6e-8 each.
    run.check("a·b", ops::matmul(d_a, d_b), {1e-5, 1e-5});
    run.check("bᵀ·b", ops::matmul(d_b, d_b, true, false), {1e-5, 1e-5});
  }));
  Tensor nan = Tensor::from_vector<float>({1.0f, NAN, INFINITY, 2.0f, -INFINITY}, {5});
  EXPECT_EQ(ops::count_nonfinite(nan.to(gpu)), 3);
  // Many tensors, one copy back: the counts land in an int64 tensor on the device.
  const Tensor big = testing::random_tensor({100003}, 38).to(gpu), nan_gpu = nan.to(gpu);
  EXPECT_EQ(ops::count_nonfinite_each({&nan_gpu, &big, &nan_gpu}), (std::vector<std::int64_t>{3, 0, 3}));

  // A linear layer's forward and all three gradients (as for the products above).
  EXPECT_TRUE(testing::cuda_matches_cpu([](testing::BackendRun& run) {
    autograd::Var x(run.input(testing::random_tensor({33, 17}, 34)), true);
    autograd::Var w(run.input(testing::random_tensor({9, 17}, 35)), true);
    autograd::Var bias(run.input(testing::random_tensor({9}, 36)), true);
    autograd::Var y = nn::F::linear(x, w, bias);
    autograd::backward(y, run.input(testing::random_tensor({33, 9}, 37)));
    run.check("y", y.value(), {1e-5, 1e-5});
    run.check("dx", x.grad(), {1e-5, 1e-5});
    run.check("dw", w.grad(), {1e-5, 1e-5});
    run.check("dbias", bias.grad(), {1e-5, 1e-5});
  }));
}

TEST(RuntimeCuda, PoolKeepsItsMemoryAndUploadsNeedNoSynchronization) {
  AEGIS_REQUIRE_GPU();
  const Tensor warm = Tensor::zeros({1024}, DType::F32, Device::cuda());  // first allocation on the device
  EXPECT_EQ(cuda_backend::pool_release_threshold(0), UINT64_MAX);
  // A host buffer changed right after its upload returns: the device holds the old bytes.
  std::vector<float> host(4097, 1.5f);
  Tensor on_gpu = Tensor::from_vector(host, {4097}).to(Device::cuda());
  std::fill(host.begin(), host.end(), -7.0f);
  for (float v : on_gpu.to_vector<float>()) ASSERT_EQ(v, 1.5f);
  // Int64 tensors round-trip through the device.
  const std::vector<std::int64_t> counts = {0, -1, std::int64_t{1} << 40, 7};
  EXPECT_EQ(Tensor::from_vector(counts, {4}).to(Device::cuda()).to_vector<std::int64_t>(), counts);
}

}  // namespace
}  // namespace aegis
