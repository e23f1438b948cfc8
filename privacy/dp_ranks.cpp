// Data-parallel DP-SGD over MPI ranks (privacy/dp_ranks.h).
#include "privacy/dp_ranks.h"

namespace aegis::privacy {

std::vector<std::int64_t> rank_slice(const std::vector<std::int64_t>& sample) {
  const auto [begin, end] = nn::rank_rows(static_cast<std::int64_t>(sample.size()));
  return {sample.begin() + begin, sample.begin() + end};
}

std::int64_t rank_slice_begin(std::size_t sample_size) {
  return nn::rank_rows(static_cast<std::int64_t>(sample_size)).first;
}

}  // namespace aegis::privacy
