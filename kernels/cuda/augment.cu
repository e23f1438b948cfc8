#include "core/cuda/check.h"
#include "core/cuda_backend.h"
#include "kernels/augment.h"

namespace aegis::kernels::cuda {
namespace {

// One thread per output element: it finds its row's transform (one Philox block), reads its
// source pixel (or a zero) and adds its own noise draw.
__global__ void augment_rows_kernel(AugmentGeometry g, const float* x, const unsigned long long* row_keys,
                                    philox::Key geometry_key, philox::Key noise_key, float* y) {
  const long long d = g.channels * g.height * g.width, total = g.rows * d;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < total; i += 1LL * gridDim.x * blockDim.x) {
    const long long r = i / d, e = i - r * d;
    const long long c = e / (g.height * g.width), hw = e - c * g.height * g.width;
    const long long h = hw / g.width, w = hw - h * g.width;
    const RowTransform t = row_transform(geometry_key, row_keys[r], g.pad, g.flip);
    const long long sh = extended_index(h + t.dy, g.height, g.mirror);
    const long long sw = extended_index((t.flip ? g.width - 1 - w : w) + t.dx, g.width, g.mirror);
    float v = sh >= 0 && sw >= 0 ? x[r * d + (c * g.height + sh) * g.width + sw] : 0.0f;
    if (g.noise_sigma > 0.0f)
      v += static_cast<float>(g.noise_sigma * philox::normal_double(noise_key, row_keys[r] * d + e));
    y[i] = v;
  }
}

}  // namespace

void augment_rows(const AugmentGeometry& g, const float* d_x, const std::uint64_t* d_row_keys,
                  const philox::Key& geometry_key, const philox::Key& noise_key, float* d_y) {
  const std::int64_t total = g.rows * g.row_elements();
  if (total <= 0) return;
  constexpr int kBlock = 256;
  augment_rows_kernel<<<cuda_backend::grid_for(total, kBlock), kBlock, 0, cuda_backend::stream()>>>(
      g, d_x, reinterpret_cast<const unsigned long long*>(d_row_keys), geometry_key, noise_key, d_y);
  CUDA_CHECK_LAUNCH();
}

}  // namespace aegis::kernels::cuda
