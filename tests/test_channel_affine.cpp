// The per-channel affine map (kernels/channel_affine.h, F::channel_affine): exact values and
// input gradients, channels kept apart (an infinite input stays in its channel), bad shapes
// refused, and the CUDA kernel bit-identical to the CPU's.
#include <cmath>
#include <limits>
#include <vector>

#include "nn/functional.h"
#include "support/backend_compare.h"
#include "support/testing.h"

namespace aegis {
namespace {

using autograd::Var;
namespace F = nn::F;

TEST(ChannelAffine, IsXTimesScalePlusShiftPerChannel) {
  for (const Shape& shape : {Shape{3, 4, 5, 6}, Shape{2, 7}, Shape{1, 3, 1, 1}}) {
    const std::int64_t c = shape[1];
    const Tensor scale = testing::random_tensor({c}, 1), shift = testing::random_tensor({c}, 2);
    const Var x(testing::random_tensor(shape, 3), true);
    const Var y = F::channel_affine(x, scale, shift);
    const Tensor gy = testing::random_tensor(shape, 4);
    autograd::backward(y, gy);
    const std::vector<float> xv = x.value().to_vector<float>(), yv = y.value().to_vector<float>(),
                             gv = gy.to_vector<float>(), dx = x.grad().to_vector<float>(),
                             a = scale.to_vector<float>(), b = shift.to_vector<float>();
    const std::int64_t s = x.value().numel() / (shape[0] * c);
    for (std::size_t i = 0; i < xv.size(); ++i) {
      const auto ch = static_cast<std::size_t>((static_cast<std::int64_t>(i) / s) % c);
      const float product = xv[i] * a[ch];
      EXPECT_EQ(yv[i], product + b[ch]) << i;
      EXPECT_EQ(dx[i], gv[i] * a[ch]) << i;
    }
  }
}

TEST(ChannelAffine, AnInfiniteInputStaysInItsChannel) {
  std::vector<float> v(2 * 3 * 2, 0.5f);
  v[0] = std::numeric_limits<float>::infinity();  // example 0, channel 0
  const Var y = F::channel_affine(Var(Tensor::from_vector(v, {2, 3, 2})), Tensor::from_vector<float>({2, 3, 4}, {3}),
                                  Tensor::from_vector<float>({0, 1, 2}, {3}));
  const std::vector<float> out = y.value().to_vector<float>();
  EXPECT_TRUE(std::isinf(out[0]));
  for (std::size_t i = 1; i < out.size(); ++i) EXPECT_TRUE(std::isfinite(out[i])) << i;
}

TEST(ChannelAffine, RefusesMismatchedShapes) {
  const Var x(testing::random_tensor({2, 3, 4, 4}, 5));
  EXPECT_THROW(F::channel_affine(x, Tensor::zeros({4}), Tensor::zeros({3})), ShapeError);
  EXPECT_THROW(F::channel_affine(x, Tensor::zeros({3}), Tensor::zeros({2})), ShapeError);
  EXPECT_THROW(F::channel_affine(Var(testing::random_tensor({6}, 6)), Tensor::zeros({6}), Tensor::zeros({6})),
               ShapeError);
}

TEST(ChannelAffineCuda, MatchesCpuExactly) {
  AEGIS_REQUIRE_GPU();
  EXPECT_TRUE(testing::cuda_matches_cpu([](testing::BackendRun& run) {
    const Var x(run.input(testing::random_tensor({5, 16, 7, 9}, 7)), true);
    const Var y = F::channel_affine(x, run.input(testing::random_tensor({16}, 8)),
                                    run.input(testing::random_tensor({16}, 9)));
    autograd::backward(y, run.input(testing::random_tensor({5, 16, 7, 9}, 10)));
    run.check("y", y.value(), testing::kExact);
    run.check("dx", x.grad(), testing::kExact);
  }));
}

}  // namespace
}  // namespace aegis
