// Grouped and depthwise convolution (kernels/grouped_conv.h, F::grouped_conv2d):
// forward and backward equal the dense convolution with the block-diagonal weight, gradients
// pass gradcheck, bad shapes are refused, and the CUDA kernels match the CPU's.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "nn/functional.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
namespace F = nn::F;

struct GroupCase {
  std::int64_t n, c, h, w, o, k, groups, stride, padding;
  Shape x_shape() const { return {n, c, h, w}; }
  Shape w_shape() const { return {o, c / groups, k, k}; }
  nn::Conv2dOptions options() const { return {stride, padding}; }
  std::string str() const {
    std::ostringstream os;
    os << "x[" << n << "," << c << "," << h << "," << w << "] o=" << o << " k=" << k << " groups=" << groups
       << " s=" << stride << " p=" << padding;
    return os.str();
  }
};

// Depthwise (groups = C, with and without a channel multiplier), grouped with several channels per
// group, strides 1–3, paddings 0–2, non-square inputs, a kernel as large as the padded input.
const GroupCase kCases[] = {
    {2, 4, 7, 6, 4, 3, 4, 1, 1},  {3, 6, 9, 9, 12, 3, 6, 2, 1}, {2, 6, 8, 5, 4, 3, 2, 1, 0},
    {1, 8, 11, 10, 8, 5, 2, 3, 2}, {2, 3, 5, 5, 6, 1, 3, 1, 0}, {2, 4, 3, 3, 4, 5, 4, 1, 1},
};

// The grouped weight [O, C/G, k, k] as a dense [O, C, k, k] one, zero outside the diagonal blocks.
Tensor block_diagonal(const Tensor& w, const GroupCase& cs) {
  const std::vector<float> v = w.to_vector<float>();
  const std::int64_t cg = cs.c / cs.groups, og = cs.o / cs.groups, kk = cs.k * cs.k;
  std::vector<float> dense(static_cast<std::size_t>(cs.o * cs.c * kk), 0.0f);
  for (std::int64_t o = 0; o < cs.o; ++o)
    for (std::int64_t ci = 0; ci < cg; ++ci)
      for (std::int64_t t = 0; t < kk; ++t)
        dense[static_cast<std::size_t>((o * cs.c + (o / og) * cg + ci) * kk + t)] =
            v[static_cast<std::size_t>((o * cg + ci) * kk + t)];
  return Tensor::from_vector(dense, {cs.o, cs.c, cs.k, cs.k});
}

// The dense weight's gradient restricted to the diagonal blocks, as [O, C/G, k, k].
std::vector<double> diagonal_blocks(const Tensor& dense_grad, const GroupCase& cs) {
  const std::vector<float> v = dense_grad.to_vector<float>();
  const std::int64_t cg = cs.c / cs.groups, og = cs.o / cs.groups, kk = cs.k * cs.k;
  std::vector<double> out;
  for (std::int64_t o = 0; o < cs.o; ++o)
    for (std::int64_t ci = 0; ci < cg; ++ci)
      for (std::int64_t t = 0; t < kk; ++t) out.push_back(v[static_cast<std::size_t>((o * cs.c + (o / og) * cg + ci) * kk + t)]);
  return out;
}

TEST(GroupedConv2d, EqualsTheDenseConvolutionWithABlockDiagonalWeight) {
  for (const GroupCase& cs : kCases) {
    SCOPED_TRACE(cs.str());
    const Var x(testing::random_tensor(cs.x_shape(), 1), true), w(testing::random_tensor(cs.w_shape(), 2), true),
        b(testing::random_tensor({cs.o}, 3), true);
    const Var xd(x.value().clone(), true), wd(block_diagonal(w.value(), cs), true), bd(b.value().clone(), true);
    const Var y = F::grouped_conv2d(x, w, b, cs.options(), cs.groups);
    const Var yd = F::conv2d(xd, wd, bd, cs.options());
    ASSERT_EQ(y.shape(), yd.shape());
    EXPECT_TRUE(testing::all_close(y.value(), yd.value(), 1e-5, 1e-5));
    const Tensor gy = testing::random_tensor(y.shape(), 4);
    autograd::backward(y, gy);
    autograd::backward(yd, gy);
    EXPECT_TRUE(testing::all_close(x.grad(), xd.grad(), 1e-5, 1e-5));
    EXPECT_TRUE(testing::all_close(w.grad(), diagonal_blocks(wd.grad(), cs), 1e-4, 1e-5));
    EXPECT_TRUE(testing::all_close(b.grad(), bd.grad(), 1e-5, 1e-5));
  }
}

TEST(GroupedConv2d, GradientsMatchFiniteDifferences) {
  const GroupCase cases[] = {{2, 4, 5, 4, 4, 3, 4, 2, 1}, {1, 4, 4, 5, 6, 2, 2, 1, 0}};
  for (const GroupCase& cs : cases) {
    SCOPED_TRACE(cs.str());
    std::vector<Var> in{Var(testing::random_tensor(cs.x_shape(), 8), true),
                        Var(testing::random_tensor(cs.w_shape(), 9), true),
                        Var(testing::random_tensor({cs.o}, 10), true)};
    const nn::Conv2dOptions opt = cs.options();
    const std::int64_t groups = cs.groups;
    EXPECT_TRUE(testing::gradcheck(
        [opt, groups](const std::vector<Var>& v) {
          return testing::weighted_sum(F::grouped_conv2d(v[0], v[1], v[2], opt, groups), 11);
        },
        in));
  }
}

TEST(GroupedConv2d, RefusesShapesThatDoNotSplitIntoGroups) {
  const Var x(testing::random_tensor({2, 6, 5, 5}, 20));
  EXPECT_NO_THROW(F::grouped_conv2d(x, Var(testing::random_tensor({6, 2, 3, 3}, 21)), Var(), {}, 3));
  EXPECT_THROW(F::grouped_conv2d(x, Var(testing::random_tensor({6, 3, 3, 3}, 21)), Var(), {}, 3), ShapeError);
  EXPECT_THROW(F::grouped_conv2d(x, Var(testing::random_tensor({5, 2, 3, 3}, 21)), Var(), {}, 3), ShapeError);
  EXPECT_THROW(F::grouped_conv2d(x, Var(testing::random_tensor({6, 2, 3, 3}, 21)), Var(), {}, 0), InvalidArgument);
  // The grouped kernel has no dilation: refused, never ignored.
  EXPECT_THROW(F::grouped_conv2d(x, Var(testing::random_tensor({6, 2, 3, 3}, 21)), Var(), {1, 0, 2}, 3), InvalidArgument);
  EXPECT_THROW(F::grouped_conv2d(x, Var(testing::random_tensor({6, 2, 7, 7}, 21)), Var(), {}, 3), ShapeError);
  EXPECT_THROW(F::grouped_conv2d(x, Var(testing::random_tensor({6, 2, 3, 3}, 21)),
                                 Var(testing::random_tensor({5}, 22)), {}, 3),
               ShapeError);
}

// y sums ≤ C/G·k² = 75 products, dx ≤ O/G·k² and dw up to N·H'·W' products in double on both.
TEST(GroupedConv2dCuda, MatchesCpu) {
  AEGIS_REQUIRE_GPU();
  for (const GroupCase& cs : kCases) {
    SCOPED_TRACE(cs.str());
    EXPECT_TRUE(testing::cuda_matches_cpu([&](testing::BackendRun& run) {
      const Var x(run.input(testing::random_tensor(cs.x_shape(), 60)), true);
      const Var w(run.input(testing::random_tensor(cs.w_shape(), 61)), true);
      const Var b(run.input(testing::random_tensor({cs.o}, 62)), true);
      const Var y = F::grouped_conv2d(x, w, b, cs.options(), cs.groups);
      autograd::backward(y, run.input(testing::random_tensor(y.shape(), 63)));
      run.check("y", y.value(), {1e-5, 1e-5});
      run.check("dx", x.grad(), {1e-5, 1e-5});
      run.check("dw", w.grad(), {1e-5, 1e-5});
      run.check("db", b.grad(), {1e-5, 1e-5});
    }));
  }
}

}  // namespace
}  // namespace aegis
