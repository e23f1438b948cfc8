// Data-parallel DP-SGD over MPI ranks (privacy/dp_ranks.h).
#include "privacy/dp_ranks.h"

#include <algorithm>

#include "core/error.h"
#include "core/mpi.h"

namespace aegis::privacy {

std::vector<std::int64_t> rank_slice(const std::vector<std::int64_t>& sample) {
  const mpi::World& world = mpi::world();
  if (world.size == 1) return sample;
  const auto m = static_cast<std::int64_t>(sample.size());
  const std::int64_t begin = m * world.rank / world.size, end = m * (world.rank + 1) / world.size;
  return {sample.begin() + begin, sample.begin() + end};
}

std::int64_t rank_slice_begin(std::size_t sample_size) {
  const mpi::World& world = mpi::world();
  return static_cast<std::int64_t>(sample_size) * world.rank / world.size;
}

std::vector<double> sum_gradients_over_ranks(const std::vector<nn::Var>& parameters,
                                             const std::vector<double>& counts) {
  if (mpi::world().size == 1) return counts;
  // One message: the counts, a has-grad flag per parameter, then every gradient element (zeros
  // for a parameter this rank did not reach).
  std::vector<double> values = counts;
  for (const nn::Var& p : parameters) values.push_back(p.has_grad() ? 1.0 : 0.0);
  for (const nn::Var& p : parameters) {
    if (p.has_grad()) {
      AEGIS_CHECK(p.grad().dtype() == DType::F32, "data-parallel DP-SGD: a gradient of dtype "
                                                      << dtype_name(p.grad().dtype()) << " (float32 expected)");
      const std::vector<float> g = p.grad().to_vector<float>();
      values.insert(values.end(), g.begin(), g.end());
    } else {
      values.resize(values.size() + static_cast<std::size_t>(p.value().numel()), 0.0);
    }
  }
  const std::vector<double> sum = mpi::sum_over_ranks(values);
  std::size_t at = counts.size() + parameters.size();
  for (std::size_t k = 0; k < parameters.size(); ++k) {
    const nn::Var& p = parameters[k];
    const auto numel = static_cast<std::size_t>(p.value().numel());
    if (sum[counts.size() + k] > 0.0) {
      std::vector<float> g(numel);
      std::transform(sum.begin() + static_cast<std::ptrdiff_t>(at),
                     sum.begin() + static_cast<std::ptrdiff_t>(at + numel), g.begin(),
                     [](double v) { return static_cast<float>(v); });
      nn::Var param = p;
      param.zero_grad();
      param.accumulate_grad_owned(Tensor::from_vector(g, p.value().shape()).to(p.device()));
    }
    at += numel;
  }
  return {sum.begin(), sum.begin() + static_cast<std::ptrdiff_t>(counts.size())};
}

}  // namespace aegis::privacy
