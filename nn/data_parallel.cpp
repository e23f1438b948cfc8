// Data-parallel training over MPI ranks (nn/data_parallel.h).
#include "nn/data_parallel.h"

#include "core/error.h"
#include "core/mpi.h"
#include "kernels/rank_sum.h"
#include "runtime/dispatch.h"

namespace aegis::nn {

std::pair<std::int64_t, std::int64_t> rank_rows(std::int64_t m) {
  const mpi::World& world = mpi::world();
  return {m * world.rank / world.size, m * (world.rank + 1) / world.size};
}

std::vector<double> sum_gradients_over_ranks(const std::vector<Var>& parameters, const std::vector<double>& counts,
                                             double grad_scale) {
  const mpi::World& world = mpi::world();
  if (world.size == 1 && grad_scale == 1.0) return counts;
  // The small message first, through MPI: the counts, a has-grad flag per parameter, and whether
  // this rank's parameters are on a GPU (the device sums below must be the same collective on
  // every rank).
  Device device = Device::cpu();
  for (const Var& p : parameters) device = p.value().device();
  std::vector<double> small = counts;
  for (const Var& p : parameters) small.push_back(p.has_grad() ? 1.0 : 0.0);
  small.push_back(device.is_cuda() ? 1.0 : 0.0);
  const std::vector<double> totals = mpi::sum_over_ranks(small);
  const double on_gpus = totals.back();
  AEGIS_CHECK(on_gpus == 0.0 || on_gpus == static_cast<double>(world.size),
              "data-parallel training: " << on_gpus << " of " << world.size
                                         << " ranks run on a GPU and the others on the CPU; give every rank a GPU "
                                            "or run all of them with --device cpu");
  // Then every gradient element (zeros for a parameter this rank did not reach), one flat buffer.
  std::int64_t total = 0;
  for (const Var& p : parameters) total += p.value().numel();
  Tensor flat = Tensor::zeros({total}, DType::F32, device);
  std::int64_t at = 0;
  for (const Var& p : parameters) {
    const std::int64_t numel = p.value().numel();
    AEGIS_CHECK(p.value().device() == device,
                "data-parallel training: parameters on " << device.str() << " and " << p.value().device().str());
    if (p.has_grad()) {
      AEGIS_CHECK(p.grad().dtype() == DType::F32, "data-parallel training: a gradient of dtype "
                                                      << dtype_name(p.grad().dtype()) << " (float32 expected)");
      flat.rows(at, at + numel).copy_from(p.grad().reshape({numel}));
    }
    at += numel;
  }
  AEGIS_DISPATCH(device, sum_over_ranks(flat.data<float>(), total, grad_scale));
  at = 0;
  for (std::size_t k = 0; k < parameters.size(); ++k) {
    const Var& p = parameters[k];
    const std::int64_t numel = p.value().numel();
    if (totals[counts.size() + k] > 0.0) {
      Var param = p;
      param.zero_grad();
      param.accumulate_grad_owned(flat.rows(at, at + numel).reshape(p.value().shape()).clone());
    }
    at += numel;
  }
  return {totals.begin(), totals.begin() + static_cast<std::ptrdiff_t>(counts.size())};
}

}  // namespace aegis::nn
