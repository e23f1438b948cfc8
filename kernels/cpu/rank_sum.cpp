// CPU backend of the sum over ranks (kernels/rank_sum.h): the reference that the CUDA path matches
// bit for bit.
#include "kernels/rank_sum.h"

#include <vector>

#include "core/error.h"
#include "core/mpi.h"

namespace aegis::kernels {

// AEGIS_NCCL_COMPILED is set on this file alone by CMakeLists.txt (0 or 1).
bool nccl_compiled() {
  return AEGIS_NCCL_COMPILED != 0;
}

namespace cpu {

void add_in_rank_order(const float* all, int ranks, std::int64_t n, double scale, float* out) {
  AEGIS_CHECK(ranks >= 1 && n >= 0, "add_in_rank_order: " << ranks << " ranks of " << n << " values");
  for (std::int64_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (int r = 0; r < ranks; ++r) s += static_cast<double>(all[static_cast<std::int64_t>(r) * n + i]);
    out[i] = static_cast<float>(s * scale);
  }
}

void sum_over_ranks(float* values, std::int64_t n, double scale) {
  AEGIS_CHECK(n >= 0, "sum_over_ranks: " << n << " values");
  // mpi::sum_over_ranks adds in double in rank order: add_in_rank_order's sum.
  const std::vector<double> sum = mpi::sum_over_ranks(std::vector<double>(values, values + n));
  for (std::int64_t i = 0; i < n; ++i) values[i] = static_cast<float>(sum[static_cast<std::size_t>(i)] * scale);
}

}  // namespace cpu
}  // namespace aegis::kernels
