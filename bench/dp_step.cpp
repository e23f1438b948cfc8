// DP-SGD step benchmark: forward, summed cross-entropy, one backward pass with per-example
// capture, per-example clipping (book-keeping) and the fused noise + SGD update — against the
// non-private step (mean loss, backward, SGD) of the same model on the same fixed batch. Each
// mode runs in its own process so that its peak resident memory is its own. Prints one JSON
// object; bench/opacus_dp_step.py measures the same step with Opacus.
//
// usage: bench_dp_step [--mode dp|nonprivate] [--model cnn-fmnist] [--batch 256] [--steps 30]
//                      [--warmup 5] [--device cpu|cuda|auto] [--norm auto|ghost|materialize]
//                      [--keep-mib M]   (ClipOptions::keep_per_example_bytes, in MiB)
#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>

#include "bench_common.h"
#include "nn/optim.h"
#include "privacy/noise.h"
#include "privacy/per_example.h"

using namespace aegis;

int main(int argc, char** argv) {
  std::string mode = "dp", model_name = "cnn-fmnist", device_spec = "auto", norm = "auto";
  std::int64_t batch = 256, steps = 30, warmup = 5, keep_mib = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--mode") mode = v;
    else if (k == "--model") model_name = v;
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--device") device_spec = v;
    else if (k == "--norm") norm = v;
    else if (k == "--keep-mib") keep_mib = std::stoll(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    AEGIS_CHECK(mode == "dp" || mode == "nonprivate", "mode '" << mode << "' must be dp or nonprivate");
    const Device device = choose_device(device_spec).device;
    const bench::Workload work = bench::make_workload(model_name, batch, device);
    nn::Module* model = work.model.get();
    const Tensor& x = work.x;
    const Tensor& labels = work.labels;

    const bool dp = mode == "dp";
    std::unique_ptr<nn::Optimizer> opt;
    privacy::ClipOptions clip;
    clip.max_grad_norm = 1.0f;
    clip.method = norm == "ghost"         ? privacy::NormMethod::Ghost
                  : norm == "materialize" ? privacy::NormMethod::Materialize
                                          : privacy::NormMethod::Auto;
    if (keep_mib >= 0) clip.keep_per_example_bytes = static_cast<std::size_t>(keep_mib) << 20;
    if (dp) {
      privacy::DpNoiseOptions noise;
      noise.noise_multiplier = 1.0;
      noise.max_grad_norm = 1.0;
      noise.expected_batch_size = static_cast<double>(batch);
      opt = privacy::make_dp_optimizer(nn::parse_optimizer("sgd"), model->parameters(), 0.1f, noise);
      privacy::enable_per_example_capture(*model, true);
    } else {
      opt = nn::make_optimizer(nn::parse_optimizer("sgd"), model->parameters(), 0.1f);
    }
    std::vector<double> ms;
    for (std::int64_t s = 0; s < warmup + steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      opt->zero_grad();
      nn::Var logits = model->forward(nn::Var(x, false));
      if (dp) {
        autograd::backward(nn::F::cross_entropy(logits, labels, nn::Reduction::Sum));
        privacy::clip_and_accumulate(*model, clip);
      } else {
        autograd::backward(nn::F::cross_entropy(logits, labels, nn::Reduction::Mean));
      }
      opt->step();
      bench::synchronize(device);
      const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (s >= warmup) ms.push_back(dt);
    }
    std::sort(ms.begin(), ms.end());
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    nlohmann::json j{{"bench", "dp_step"},
                     {"impl", "aegis"},
                     {"mode", dp ? "dp (" + norm + ")" : "non-private"},
                     {"model", model_name},
                     {"batch", batch},
                     {"device", device.is_cuda() ? cuda_device_description(device.index) : "cpu"},
                     {"steps", steps},
                     {"median_ms", ms[ms.size() / 2]},
                     {"min_ms", ms.front()},
                     {"peak_rss_mib", static_cast<double>(usage.ru_maxrss) / 1024.0}};
    std::cout << j.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_dp_step: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
