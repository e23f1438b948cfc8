// The forward-precision setting (core/math_precision.h): names, scopes, the CPU backend's
// indifference to it, and on a GPU the bf16/fp16 gemm and convolution forward against a double
// reference of the same rounded operands and against float32, the overflow count, the backward
// convolution's full fp32, and capture of the 16-bit paths in a CUDA graph.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/blas.h"
#include "kernels/conv.h"
#include "nn/functional.h"
#include "reference/conv_pool.h"
#include "core/config.h"
#include "core/cuda_backend.h"
#include "core/math_precision.h"
#include "runtime/dispatch.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;

constexpr MathPrecision kAll[] = {MathPrecision::Fp32, MathPrecision::Tf32, MathPrecision::Bf16, MathPrecision::Fp16};

TEST(MathPrecision, NamesRoundTrip) {
  EXPECT_STREQ(math_precision_name(MathPrecision::Fp32), "fp32");
  EXPECT_STREQ(math_precision_name(MathPrecision::Tf32), "tf32");
  EXPECT_STREQ(math_precision_name(MathPrecision::Bf16), "bf16");
  EXPECT_STREQ(math_precision_name(MathPrecision::Fp16), "fp16");
  for (MathPrecision p : kAll) EXPECT_EQ(parse_math_precision(math_precision_name(p)), p);
  EXPECT_FALSE(is_16_bit(MathPrecision::Fp32));
  EXPECT_FALSE(is_16_bit(MathPrecision::Tf32));
  EXPECT_TRUE(is_16_bit(MathPrecision::Bf16));
  EXPECT_TRUE(is_16_bit(MathPrecision::Fp16));
}

TEST(MathPrecision, RejectsOtherNames) {
  for (const std::string bad : {"foo", "", "fp64", "BF16", "bf16 ", "half", "float16"}) {
    try {
      parse_math_precision(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const InvalidArgument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("'" + bad + "'"), std::string::npos) << what;
      EXPECT_NE(what.find("fp32, tf32, bf16, fp16"), std::string::npos) << what;
    }
  }
}

TEST(MathPrecision, ScopesNestAndRestore) {
  std::int64_t a = 0, b = 0;  // stand-ins: the scope only stores the pointer
  EXPECT_EQ(math_precision(), MathPrecision::Fp32);
  EXPECT_EQ(math_overflow_counter(), nullptr);
  {
    MathPrecisionScope outer(MathPrecision::Bf16, &a);
    EXPECT_EQ(math_precision(), MathPrecision::Bf16);
    EXPECT_EQ(math_overflow_counter(), &a);
    {
      MathPrecisionScope inner(MathPrecision::Fp16, &b);
      EXPECT_EQ(math_precision(), MathPrecision::Fp16);
      EXPECT_EQ(math_overflow_counter(), &b);
    }
    EXPECT_EQ(math_precision(), MathPrecision::Bf16);
    EXPECT_EQ(math_overflow_counter(), &a);
  }
  EXPECT_EQ(math_precision(), MathPrecision::Fp32);
  EXPECT_EQ(math_overflow_counter(), nullptr);
}

TEST(MathPrecision, TheCpuBackendIgnoresIt) {
  const Tensor x = testing::random_tensor({3, 2, 7, 6}, 1), w = testing::random_tensor({4, 2, 3, 3}, 2);
  const Tensor b = testing::random_tensor({4}, 3);
  const Tensor lx = testing::random_tensor({5, 33}, 4), lw = testing::random_tensor({6, 33}, 5);
  const Tensor conv = nn::F::conv2d(Var(x), Var(w), Var(b), {2, 1}).value();
  const Tensor linear = nn::F::linear(Var(lx), Var(lw), Var()).value();
  for (MathPrecision p : kAll) {
    MathPrecisionScope scope(p);
    EXPECT_TRUE(testing::all_close(nn::F::conv2d(Var(x), Var(w), Var(b), {2, 1}).value(), conv, 0, 0));
    EXPECT_TRUE(testing::all_close(nn::F::linear(Var(lx), Var(lw), Var()).value(), linear, 0, 0));
  }
}

// ---- the 16-bit paths on the GPU --------------------------------------------------------------

constexpr MathPrecision k16Bit[] = {MathPrecision::Bf16, MathPrecision::Fp16};

// Unit roundoff of the 16-bit types: 8 significant bits (bf16), 11 (fp16).
double unit_roundoff(MathPrecision p) {
  return p == MathPrecision::Bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
}

// Round to nearest even on the host, for values well inside the type's range: bf16 keeps the top
// 16 bits of the float; fp16 keeps 11 significant bits, with spacing 2⁻²⁴ below 2⁻¹⁴ (subnormals).
double round16(MathPrecision p, float v) {
  if (p == MathPrecision::Bf16) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, &v, 4);
    bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
    float r = 0;
    std::memcpy(&r, &bits, 4);
    return r;
  }
  const double a = std::fabs(static_cast<double>(v));
  if (a == 0) return v;
  int e = 0;
  std::frexp(a, &e);  // a ∈ [2^(e−1), 2^e)
  const double quantum = std::ldexp(1.0, std::max(e, -13) - 11);
  return std::copysign(std::nearbyint(a / quantum) * quantum, static_cast<double>(v));
}

std::vector<double> rounded(MathPrecision p, const Tensor& t) {
  std::vector<double> out;
  for (float v : t.to_vector<float>()) out.push_back(round16(p, v));
  return out;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t.to_vector<float>()) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

struct GemmCase {
  bool ta, tb;
  std::int64_t m, n, k;
};

// Element (i, j) of op(X) for row-major X that is [rows, cols] before the optional transpose.
double at(const std::vector<double>& x, bool trans, std::int64_t cols_before, std::int64_t i, std::int64_t j) {
  return trans ? x[static_cast<std::size_t>(j * cols_before + i)] : x[static_cast<std::size_t>(i * cols_before + j)];
}

struct ConvCase {
  std::int64_t n, c, h, w, o, kh, kw, stride, pad;
  kernels::Conv2dGeometry geometry() const { return {n, c, h, w, o, kh, kw, stride, pad}; }
  reference::ConvDims dims() const { return {n, c, h, w, o, kh, kw, stride, pad}; }
};

std::int64_t read_counter(const std::shared_ptr<Storage>& counter) {
  std::int64_t value = -1;
  cuda_backend::copy(&value, counter->data(), 8, cuda_backend::Copy::DeviceToHost);
  return value;
}

TEST(Gemm16BitCuda, MatchesRoundedOperandsAndFloat32) {
  AEGIS_REQUIRE_GPU();
  const GemmCase cases[] = {{false, false, 1, 1, 1}, {false, true, 7, 5, 33},      {true, false, 9, 4, 17},
                            {true, true, 3, 11, 64}, {false, true, 129, 65, 1000}, {false, false, 2, 300, 7}};
  const float alpha = 0.75f, beta = 0.5f;
  for (const GemmCase& c : cases) {
    const Tensor a = testing::random_tensor(c.ta ? Shape{c.k, c.m} : Shape{c.m, c.k}, 10 + c.k);
    const Tensor b = testing::random_tensor(c.tb ? Shape{c.n, c.k} : Shape{c.k, c.n}, 20 + c.k, -2.0f, 2.0f);
    const Tensor c0 = testing::random_tensor({c.m, c.n}, 30 + c.k);
    const kernels::GemmArgs g{c.ta, c.tb, c.m, c.n, c.k, alpha, beta};
    Tensor fp32 = c0.clone();
    kernels::cpu::gemm(g, a.data<float>(), b.data<float>(), fp32.data<float>());
    for (MathPrecision p : k16Bit) {
      SCOPED_TRACE(std::string(math_precision_name(p)) + " m " + std::to_string(c.m) + " n " + std::to_string(c.n) +
                   " k " + std::to_string(c.k) + (c.ta ? " Aᵀ" : "") + (c.tb ? " Bᵀ" : ""));
      const Tensor d_a = a.to(Device::cuda()), d_b = b.to(Device::cuda());
      Tensor d_c = c0.to(Device::cuda());
      {
        MathPrecisionScope scope(p);
        AEGIS_DISPATCH(Device::cuda(), gemm(g, d_a.data<float>(), d_b.data<float>(), d_c.data<float>()));
      }
      const std::vector<float> got = d_c.to(Device::cpu()).to_vector<float>();
      const std::vector<double> ra = rounded(p, a), rb = rounded(p, b);
      const std::vector<float> h_c0 = c0.to_vector<float>(), h_fp32 = fp32.to_vector<float>();
      // Against fp32: each product a·b of rounded operands is off by ≤ 2u·|a·b| with a random
      // sign, so the sum of k is off by about √(2k/3)·u·max|a|·max|b|; 5·√k·u·… is ~6 of those.
      const double loose = 5.0 * unit_roundoff(p) * std::sqrt(double(c.k)) * max_abs(a) * max_abs(b) * alpha;
      bool differs = false;
      for (std::int64_t i = 0; i < c.m; ++i)
        for (std::int64_t j = 0; j < c.n; ++j) {
          double sum = 0, abs_sum = 0;
          for (std::int64_t l = 0; l < c.k; ++l) {
            const double t = at(ra, c.ta, c.ta ? c.m : c.k, i, l) * at(rb, c.tb, c.tb ? c.k : c.n, l, j);
            sum += t;
            abs_sum += std::fabs(t);
          }
          const std::size_t ij = static_cast<std::size_t>(i * c.n + j);
          const double expected = alpha * sum + beta * h_c0[ij];
          // Products of 16-bit values are exact in float32; float32 accumulation of k terms (tensor
          // cores may truncate rather than round: 2⁻²³ per addition) and the alpha/beta update.
          const double tight =
              (c.k + 2) * std::ldexp(1.0, -23) * (alpha * abs_sum + std::fabs(beta * h_c0[ij])) + 1e-30;
          ASSERT_NEAR(got[ij], expected, tight) << "(" << i << ", " << j << ")";
          ASSERT_NEAR(got[ij], h_fp32[ij], loose) << "(" << i << ", " << j << ")";
          differs = differs || got[ij] != h_fp32[ij];
        }
      if (c.k > 1) {
        EXPECT_TRUE(differs) << "the result equals float32's exactly: were the operands rounded?";
      }
    }
  }
}

TEST(Conv16BitCuda, MatchesRoundedOperandsAndFloat32) {
  AEGIS_REQUIRE_GPU();
  const ConvCase cases[] = {{1, 1, 5, 5, 1, 3, 3, 1, 0},    {2, 3, 7, 6, 4, 3, 3, 2, 1},
                            {2, 1, 28, 28, 16, 8, 8, 2, 2}, {3, 16, 13, 13, 32, 4, 4, 2, 0},
                            {2, 5, 9, 11, 3, 1, 1, 1, 0},   {64, 3, 8, 8, 4, 3, 3, 1, 1}};
  for (const ConvCase& cs : cases) {
    const kernels::Conv2dGeometry g = cs.geometry();
    const Tensor x = testing::random_tensor({cs.n, cs.c, cs.h, cs.w}, 40 + cs.c, 0.0f, 1.0f);
    const Tensor w = testing::random_tensor({cs.o, cs.c, cs.kh, cs.kw}, 50 + cs.c);
    const Tensor bias = testing::random_tensor({cs.o}, 60 + cs.c);
    const std::int64_t k = cs.c * cs.kh * cs.kw;
    Tensor fp32 = Tensor::empty({cs.n, cs.o, g.out_height(), g.out_width()});
    kernels::cpu::conv2d_forward(g, x.data<float>(), w.data<float>(), bias.data<float>(), fp32.data<float>());
    for (MathPrecision p : k16Bit) {
      SCOPED_TRACE(std::string(math_precision_name(p)) + " case " + std::to_string(&cs - cases));
      const Tensor d_x = x.to(Device::cuda()), d_w = w.to(Device::cuda()), d_bias = bias.to(Device::cuda());
      Tensor d_y = Tensor::empty(fp32.shape(), DType::F32, Device::cuda());
      {
        MathPrecisionScope scope(p);
        AEGIS_DISPATCH(Device::cuda(), conv2d_forward(g, d_x.data<float>(), d_w.data<float>(), d_bias.data<float>(),
                                                      d_y.data<float>()));
      }
      const std::vector<float> got = d_y.to(Device::cpu()).to_vector<float>(), h_fp32 = fp32.to_vector<float>();
      const std::vector<double> rx = rounded(p, x), rw = rounded(p, w);
      std::vector<double> ax(rx.size()), aw(rw.size());
      for (std::size_t i = 0; i < rx.size(); ++i) ax[i] = std::fabs(rx[i]);
      for (std::size_t i = 0; i < rw.size(); ++i) aw[i] = std::fabs(rw[i]);
      const std::vector<double> s = reference::conv2d_forward(cs.dims(), rx, rw, {});
      const std::vector<double> abs_s = reference::conv2d_forward(cs.dims(), ax, aw, {});
      const std::vector<float> h_bias = bias.to_vector<float>();
      const double u = unit_roundoff(p);
      const double loose_sum = 5.0 * u * std::sqrt(double(k)) * max_abs(x) * max_abs(w);
      const std::int64_t plane = g.out_height() * g.out_width();
      for (std::size_t i = 0; i < got.size(); ++i) {
        const double b = h_bias[(i / static_cast<std::size_t>(plane)) % static_cast<std::size_t>(cs.o)];
        // The sum of exact products accumulated in float32, rounded once more to the 16-bit output
        // (≤ u relative to nearest; 2u leaves room for a conversion that truncates), widened
        // exactly, plus the bias in float32 (one more float rounding).
        const double tight = 2.0 * u * std::fabs(s[i]) + 2.0 * (k + 2) * std::ldexp(1.0, -23) * abs_s[i] +
                             std::ldexp(1.0, -23) * (std::fabs(s[i]) + std::fabs(b)) + 1e-30;
        ASSERT_NEAR(got[i], s[i] + b, tight) << "element " << i;
        // Against float32: the operands' rounding (as for the gemm) and the output's.
        ASSERT_NEAR(got[i], h_fp32[i], loose_sum + 2.0 * u * std::fabs(double(h_fp32[i])) + 1e-6) << "element " << i;
      }
    }
  }
}

TEST(Conv16BitCuda, BackwardPassesIgnoreThePrecision) {
  AEGIS_REQUIRE_GPU();
  const kernels::Conv2dGeometry g{3, 16, 13, 13, 32, 4, 4, 2, 0};
  const Tensor x = testing::random_tensor({3, 16, 13, 13}, 70).to(Device::cuda());
  const Tensor w = testing::random_tensor({32, 16, 4, 4}, 71).to(Device::cuda());
  const Tensor gy = testing::random_tensor({3, 32, g.out_height(), g.out_width()}, 72).to(Device::cuda());
  auto grads = [&](MathPrecision p) {
    MathPrecisionScope scope(p);
    Tensor dx = Tensor::empty(x.shape(), DType::F32, Device::cuda()),
           dw = Tensor::empty(w.shape(), DType::F32, Device::cuda());
    AEGIS_DISPATCH(Device::cuda(), conv2d_backward_data(g, gy.data<float>(), w.data<float>(), dx.data<float>()));
    AEGIS_DISPATCH(Device::cuda(), conv2d_backward_filter(g, x.data<float>(), gy.data<float>(), dw.data<float>()));
    return std::make_pair(dx.to(Device::cpu()), dw.to(Device::cpu()));
  };
  const auto full = grads(MathPrecision::Fp32);
  for (MathPrecision p : {MathPrecision::Tf32, MathPrecision::Bf16, MathPrecision::Fp16}) {
    SCOPED_TRACE(math_precision_name(p));
    const auto in_scope = grads(p);
    // The same descriptors give the same deterministic fp32 algorithm: bit-identical gradients.
    EXPECT_TRUE(testing::all_close(in_scope.first, full.first, 0, 0));
    EXPECT_TRUE(testing::all_close(in_scope.second, full.second, 0, 0));
  }
}

TEST(Round16Cuda, OverflowIsCountedExactly) {
  AEGIS_REQUIRE_GPU();
  const std::int64_t zero = 0;
  auto counter = Storage::allocate(8, Device::cuda());
  // Gemm operands: three entries of A beyond fp16's 65504 (and 65519.99, which rounds down to it).
  std::vector<float> h_a = testing::random_tensor({4, 6}, 80).to_vector<float>();
  h_a[1] = 7e4f;
  h_a[9] = -1e5f;
  h_a[17] = 3e38f;
  h_a[20] = 65519.99f;
  const Tensor a = Tensor::from_vector(h_a, {4, 6}).to(Device::cuda());
  const Tensor b = testing::random_tensor({6, 3}, 81).to(Device::cuda());
  Tensor c = Tensor::empty({4, 3}, DType::F32, Device::cuda());
  for (MathPrecision p : k16Bit) {
    cuda_backend::copy(counter->data(), &zero, 8, cuda_backend::Copy::HostToDevice);
    MathPrecisionScope scope(p, static_cast<std::int64_t*>(counter->data()));
    AEGIS_DISPATCH(Device::cuda(),
                   gemm({false, false, 4, 3, 6, 1.0f, 0.0f}, a.data<float>(), b.data<float>(), c.data<float>()));
    // 3e38 lies below bf16's largest value (about 3.39e38): bf16 counts nothing.
    EXPECT_EQ(read_counter(counter), p == MathPrecision::Fp16 ? 3 : 0) << math_precision_name(p);
  }
  // A convolution whose operands fit fp16 but whose every output (300·300 = 90000) does not.
  const kernels::Conv2dGeometry g{2, 1, 3, 5, 2, 1, 1, 1, 0};
  const Tensor x = Tensor::full({2, 1, 3, 5}, 300.0, DType::F32, Device::cuda());
  const Tensor w = Tensor::full({2, 1, 1, 1}, 300.0, DType::F32, Device::cuda());
  Tensor y = Tensor::empty({2, 2, 3, 5}, DType::F32, Device::cuda());
  for (MathPrecision p : k16Bit) {
    cuda_backend::copy(counter->data(), &zero, 8, cuda_backend::Copy::HostToDevice);
    MathPrecisionScope scope(p, static_cast<std::int64_t*>(counter->data()));
    AEGIS_DISPATCH(Device::cuda(), conv2d_forward(g, x.data<float>(), w.data<float>(), nullptr, y.data<float>()));
    EXPECT_EQ(read_counter(counter), p == MathPrecision::Fp16 ? 60 : 0) << math_precision_name(p);
  }
}

TEST(Round16Cuda, SixteenBitPathsAreCapturedInACudaGraph) {
  AEGIS_REQUIRE_GPU();
  const Tensor a = testing::random_tensor({37, 50}, 90).to(Device::cuda());
  const Tensor b = testing::random_tensor({23, 50}, 91).to(Device::cuda());
  const kernels::Conv2dGeometry g{4, 3, 11, 9, 5, 3, 3, 2, 1};
  const Tensor x = testing::random_tensor({4, 3, 11, 9}, 92).to(Device::cuda());
  const Tensor w = testing::random_tensor({5, 3, 3, 3}, 93).to(Device::cuda());
  const Tensor bias = testing::random_tensor({5}, 94).to(Device::cuda());
  for (MathPrecision p : k16Bit) {
    SCOPED_TRACE(math_precision_name(p));
    MathPrecisionScope scope(p);
    Tensor c = Tensor::empty({37, 23}, DType::F32, Device::cuda());
    Tensor y = Tensor::empty({4, 5, g.out_height(), g.out_width()}, DType::F32, Device::cuda());
    auto work = [&] {
      AEGIS_DISPATCH(Device::cuda(),
                     gemm({false, true, 37, 23, 50, 1.0f, 0.0f}, a.data<float>(), b.data<float>(), c.data<float>()));
      AEGIS_DISPATCH(Device::cuda(),
                     conv2d_forward(g, x.data<float>(), w.data<float>(), bias.data<float>(), y.data<float>()));
    };
    work();  // eagerly first: creates the library handles
    const Tensor c_eager = c.to(Device::cpu()), y_eager = y.to(Device::cpu());
    cuda_backend::memset_zero(c.data<float>(), 37 * 23 * 4);
    cuda_backend::memset_zero(y.data<float>(), static_cast<std::size_t>(y.numel()) * 4);
    cuda_backend::Graph graph;
    // No synchronous allocation, no host synchronization: the capture must succeed.
    ASSERT_TRUE(graph.capture(work));
    graph.launch();
    cuda_backend::synchronize();
    EXPECT_TRUE(testing::all_close(c.to(Device::cpu()), c_eager, 0, 0));
    EXPECT_TRUE(testing::all_close(y.to(Device::cpu()), y_eager, 0, 0));
  }
}

}  // namespace
}  // namespace aegis
