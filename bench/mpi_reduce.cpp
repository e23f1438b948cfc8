// The cost of one data-parallel step's gradient sum over MPI ranks: mpi::sum_over_ranks (gather
// to rank 0, add in rank order in double, broadcast; core/mpi.h) for message sizes from 10^3 to
// 10^7 values, and privacy::sum_gradients_over_ranks on the parameters of zoo models (what
// `mpirun aegis train --dp` calls once per step). Rank 0 prints one JSON object per line:
//   {"bench":"mpi_sum","ranks":K,"values":n,"bytes":8n,"median_s":t,"min_s":t0,"reps":r}
//   {"bench":"dp_grad_sum","model":"cnn-fmnist","ranks":K,"parameters":P,"median_s":t,...}
// bench/torch_allreduce.py measures torch.distributed's all_reduce of the same sizes.
//
// usage: mpirun -n K bench_mpi_reduce [--max-values 10000000] [--reps 20]
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_common.h"
#include "core/mpi.h"
#include "privacy/dp_ranks.h"

using namespace aegis;

namespace {

// Median and minimum of `reps` timed calls of f, each started together on every rank.
template <class F>
std::pair<double, double> time_calls(std::int64_t reps, F&& f) {
  std::vector<double> s;
  for (std::int64_t r = 0; r < reps + 1; ++r) {
    mpi::barrier();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) s.push_back(dt);  // the first call warms the transport up
  }
  std::sort(s.begin(), s.end());
  return {s[s.size() / 2], s.front()};
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t max_values = 10'000'000, reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--max-values")
      max_values = std::stoll(v);
    else if (k == "--reps")
      reps = std::stoll(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    const mpi::World& w = mpi::world();
    for (std::int64_t n = 1000; n <= max_values; n *= 10) {
      const std::vector<double> values(static_cast<std::size_t>(n), 1.0 + w.rank);
      const auto [median, best] = time_calls(n <= 100'000 ? reps : std::max<std::int64_t>(3, reps * 100'000 / n),
                                             [&] { (void)mpi::sum_over_ranks(values); });
      if (w.rank == 0)
        std::cout << nlohmann::json{{"bench", "mpi_sum"}, {"ranks", w.size},    {"values", n},
                                    {"bytes", 8 * n},     {"median_s", median}, {"min_s", best}}
                         .dump()
                  << std::endl;
    }
    for (const std::string name : {"mlp", "cnn-fmnist", "resnet20"}) {
      const bench::Workload work = bench::make_workload(name, 1, Device::cpu());
      const std::vector<nn::Var> params = work.model->parameters();
      std::int64_t count = 0;
      for (const nn::Var& p : params) {
        nn::Var q = p;
        q.accumulate_grad_owned(Tensor::full(p.value().shape(), 0.5f));
        count += p.value().numel();
      }
      const auto [median, best] = time_calls(reps, [&] {
        (void)privacy::sum_gradients_over_ranks(params, std::vector<double>{1.0, 2.0});
      });
      if (w.rank == 0)
        std::cout << nlohmann::json{{"bench", "dp_grad_sum"}, {"model", name},      {"ranks", w.size},
                                    {"parameters", count},    {"median_s", median}, {"min_s", best}}
                         .dump()
                  << std::endl;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_mpi_reduce: " << e.what() << "\n";
    mpi::abort_run(1);
    return 1;
  }
}
