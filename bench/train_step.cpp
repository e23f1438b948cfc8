// Training-step benchmark: forward + backward + SGD update of a zoo model on a fixed random
// batch, timed over many steps after a warm-up. Prints one JSON object per configuration;
// bench/torch_train_step.py measures the same step in PyTorch for comparison.
//
// usage: bench_train_step [--model cnn-fmnist] [--batch 256] [--steps 50] [--warmup 5]
//                         [--device cpu|cuda|auto]
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>

#include "bench_common.h"
#include "kernels/blas.h"
#include "nn/optim.h"

using namespace aegis;

int main(int argc, char** argv) {
  std::string model_name = "cnn-fmnist", device_spec = "auto";
  std::int64_t batch = 256, steps = 50, warmup = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") model_name = v;
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--device") device_spec = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    const Device device = choose_device(device_spec).device;
    const bench::Workload work = bench::make_workload(model_name, batch, device);
    nn::Module* model = work.model.get();
    const Tensor& x = work.x;
    const Tensor& labels = work.labels;
    auto opt = nn::make_optimizer(nn::parse_optimizer("sgd"), model->parameters(), 0.01f);

    std::vector<double> ms;
    for (std::int64_t s = 0; s < warmup + steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      opt->zero_grad();
      nn::Var loss = nn::F::cross_entropy(model->forward(nn::Var(x, false)), labels);
      autograd::backward(loss);
      opt->step();
      bench::synchronize(device);
      const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (s >= warmup) ms.push_back(dt);
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    nlohmann::json j{{"bench", "train_step"},
                     {"impl", "aegis"},
                     {"model", model_name},
                     {"batch", batch},
                     {"device", device.is_cuda() ? cuda_device_description(device.index) : "cpu"},
                     {"blas", kernels::cpu::blas_description()},
                     {"steps", steps},
                     {"median_ms", median},
                     {"min_ms", ms.front()},
                     {"examples_per_s", 1000.0 * static_cast<double>(batch) / median}};
    std::cout << j.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_train_step: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
