// Attack benchmark: PGD-L∞ (K steps, random start, no early stop, so every example takes every
// step) and CW-L2 (one binary-search step of 100 Adam iterations, no early abort) on a fixed
// batch of cnn-fmnist inputs. Prints one JSON object per attack with gradient steps per second
// (examples × iterations / time). bench/torch_attack.py runs the same attacks the way
// torchattacks does (one autograd.grad per step, parameters frozen).
//
// usage: bench_attack [--batch 256] [--steps 10] [--repeats 5] [--device cpu|cuda|auto]
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>

#include "attacks/attacks.h"
#include "bench_common.h"

using namespace aegis;

namespace {
template <class F>
double median_ms(int repeats, const F& f) {
  std::vector<double> ms;
  f();  // warm-up
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  std::int64_t batch = 256;
  int steps = 10, repeats = 5;
  std::string device_spec = "auto";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch") batch = std::stoll(v);
    else if (k == "--steps") steps = std::stoi(v);
    else if (k == "--repeats") repeats = std::stoi(v);
    else if (k == "--device") device_spec = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    const Device device = choose_device(device_spec).device;
    const bench::Workload work = bench::make_workload("cnn-fmnist", batch, device);
    nn::Module* model = work.model.get();
    const Tensor& x = work.x;
    const Tensor& labels = work.labels;
    auto sync = [&] { bench::synchronize(device); };
    const std::string dev = device.is_cuda() ? cuda_device_description(device.index) : "cpu";

    attacks::AttackOptions pgd;
    pgd.eps = attacks::broadcast_per_example(0.1f, batch);
    pgd.steps = steps;
    pgd.early_stop = false;
    const double pgd_ms = median_ms(repeats, [&] {
      attacks::pgd(*model, x, labels, pgd);
      sync();
    });
    std::cout << nlohmann::json{{"bench", "attack"},        {"impl", "aegis"},       {"attack", "pgd-linf"},
                                {"model", "cnn-fmnist"},     {"batch", batch},        {"iterations", steps},
                                {"device", dev},             {"median_ms", pgd_ms},
                                {"steps_per_s", 1000.0 * static_cast<double>(batch * steps) / pgd_ms}}
                     .dump()
              << std::endl;

    attacks::CwOptions cw;
    cw.attack.steps = 100;
    cw.binary_search_steps = 1;
    cw.abort_early = false;
    const double cw_ms = median_ms(std::max(1, repeats / 2), [&] {
      attacks::cw_l2(*model, x, labels, cw);
      sync();
    });
    std::cout << nlohmann::json{{"bench", "attack"},        {"impl", "aegis"},   {"attack", "cw-l2"},
                                {"model", "cnn-fmnist"},     {"batch", batch},    {"iterations", 100},
                                {"device", dev},             {"median_ms", cw_ms},
                                {"steps_per_s", 1000.0 * static_cast<double>(batch * 100) / cw_ms}}
                     .dump()
              << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_attack: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
