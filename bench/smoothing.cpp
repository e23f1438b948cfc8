// Randomized-smoothing sampling benchmark: noisy forward passes per second of
// SmoothedClassifier::sample_counts (fused noise fill, forward without a tape, on-device argmax
// counts) for one input, `--samples` draws in batches of `--batch`, on cnn-fmnist (1x28x28) and
// resnet20 (3x32x32). Also times the noise fill alone (ns per element), the part of the work that
// is not the model. bench/torch_smoothing.py runs Cohen et al.'s loop on the same models.
//
// usage: bench_smoothing [--model cnn-fmnist|resnet20|all] [--batch 1000] [--samples 10000]
//                        [--precision fp32|tf32|bf16|fp16 (all but fp32 need a GPU)]
//                        [--repeats 3] [--device cpu|cuda|auto]
#include "certify/smoothing.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_common.h"
#include "kernels/smoothing.h"
#include "runtime/dispatch.h"

using namespace aegis;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  std::int64_t batch = 1000, samples = 10000;
  int repeats = 3;
  std::string device_spec = "auto", which = "all", precision = "fp32";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch")
      batch = std::stoll(v);
    else if (k == "--samples")
      samples = std::stoll(v);
    else if (k == "--repeats")
      repeats = std::stoi(v);
    else if (k == "--device")
      device_spec = v;
    else if (k == "--model")
      which = v;
    else if (k == "--precision")
      precision = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    const Device device = choose_device(device_spec).device;
    std::vector<std::string> models =
        which == "all" ? std::vector<std::string>{"cnn-fmnist", "resnet20"} : std::vector<std::string>{which};
    for (const std::string& name : models) {
      bench::Workload w = bench::make_workload(name, 1, device);
      Shape input(w.x.shape().begin() + 1, w.x.shape().end());
      certify::SmoothedClassifier smoothed(*w.model, input, 10, device);
      certify::SmoothingOptions o;
      o.batch = batch;
      o.precision = parse_math_precision(precision);
      smoothed.sample_counts(w.x, {0}, batch, certify::SamplePhase::Estimation, o);  // warm-up
      std::vector<double> times;
      for (int r = 0; r < repeats; ++r) {
        bench::synchronize(device);
        const auto t0 = std::chrono::steady_clock::now();
        smoothed.sample_counts(w.x, {static_cast<std::uint64_t>(r)}, samples, certify::SamplePhase::Estimation, o);
        bench::synchronize(device);
        times.push_back(seconds_since(t0));
      }
      std::sort(times.begin(), times.end());
      const double s = times[times.size() / 2];

      // The noise fill alone, over one batch.
      const std::int64_t d = shape_numel(input);
      Tensor out = Tensor::empty({batch, d}, DType::F32, device);
      const Tensor d_ids = Tensor::zeros({1}, DType::I64, device);
      kernels::SmoothingBatch b;
      b.rows = batch;
      b.samples = batch;
      b.d = d;
      b.sigma = 0.25f;
      const Tensor xd = w.x.reshape({1, d});
      const auto* id_ptr = d_ids.data<std::int64_t>();
      AEGIS_DISPATCH(device, noisy_batch(out.data<float>(), xd.data<float>(), id_ptr, b));
      bench::synchronize(device);
      const int fills = 10;
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < fills; ++r)
        AEGIS_DISPATCH(device, noisy_batch(out.data<float>(), xd.data<float>(), id_ptr, b));
      bench::synchronize(device);
      const double fill_ns = seconds_since(t0) * 1e9 / (static_cast<double>(fills) * batch * d);

      nlohmann::json j = {{"bench", "smoothing"},
                          {"impl", "aegis"},
                          {"model", name},
                          {"batch", batch},
                          {"precision", precision},
                          {"samples", samples},
                          {"device", device.str()},
                          {"seconds", s},
                          {"samples_per_s", static_cast<double>(samples) / s},
                          {"noise_fill_ns_per_element", fill_ns},
                          {"cuda_graph", smoothed.stats().cuda_graph()},
                          {"cuda_graph_launches", smoothed.stats().graph_launches},
                          {"cuda_graph_failure", smoothed.stats().graph_failure}};
      std::cout << j.dump() << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_smoothing: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
