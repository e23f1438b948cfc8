// Bound-propagation benchmark: margin lower bounds (certify::margin_lower_bounds, the work of
// `aegis verify` per batch) of zoo models with their initial random weights, on a fixed batch of
// uniform [0, 1) inputs of the bundled digits' shape (1×8×8) and cycling labels. Prints one JSON
// object per (model, method) with the median time per call and per example, and the sum and
// minimum of the finite margin bounds, so that two builds can be checked for equal results as
// well as timed.
//
// usage: bench_verify [--models cnn-res,mlp] [--batch 16] [--size 8] [--eps 0.01] [--norm linf]
//                     [--relu adaptive|wong-kolter] [--repeats 3] [--device cpu|cuda|auto]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "certify/bounds.h"

using namespace aegis;

namespace {

template <class F>
double median_ms(int repeats, const F& f) {
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

bench::Workload workload(const std::string& name, std::int64_t batch, std::int64_t size, Device device) {
  nn::ModelSpec spec;
  spec.name = name;
  spec.input_shape = {1, size, size};
  bench::Workload w;
  w.model = nn::build_model(spec);
  w.model->to(device);
  Tensor x = Tensor::empty({batch, 1, size, size});
  ops::fill_uniform(x, philox::Key{1, philox::kPurposeGeneric, 0}, 0.0f, 1.0f);
  w.x = x.to(device);
  std::vector<std::int32_t> y(static_cast<std::size_t>(batch));
  for (std::int64_t i = 0; i < batch; ++i) y[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i % 10);
  w.labels = Tensor::from_vector(y, {batch});
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  std::string models = "cnn-res,mlp", norm = "linf", relu = "adaptive", device_spec = "auto";
  std::int64_t batch = 16, size = 8;
  double eps = 0.01;
  int repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--models")
      models = v;
    else if (k == "--batch")
      batch = std::stoll(v);
    else if (k == "--size")
      size = std::stoll(v);
    else if (k == "--eps")
      eps = std::stod(v);
    else if (k == "--norm")
      norm = v;
    else if (k == "--relu")
      relu = v;
    else if (k == "--repeats")
      repeats = std::stoi(v);
    else if (k == "--device")
      device_spec = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    const Device device = choose_device(device_spec).device;
    const std::string dev = device.is_cuda() ? cuda_device_description(device.index) : "cpu";
    for (const std::string& name : split_commas(models)) {
      const bench::Workload w = workload(name, batch, size, device);
      for (const certify::BoundMethod method : {certify::BoundMethod::Interval, certify::BoundMethod::Linear}) {
        certify::BoundOptions o;
        o.norm = parse_norm(norm);
        o.eps = eps;
        o.method = method;
        o.relu = relu == "wong-kolter" ? certify::ReluRelaxation::WongKolter : certify::ReluRelaxation::Adaptive;
        Tensor margins;
        const double ms = median_ms(repeats, [&] {
          margins = certify::margin_lower_bounds(*w.model, w.x, w.labels, o);
          bench::synchronize(device);
        });
        double sum = 0.0;
        float lowest = std::numeric_limits<float>::infinity();
        for (const float v : margins.to_vector<float>())
          if (std::isfinite(v)) {
            sum += v;
            lowest = std::min(lowest, v);
          }
        std::cout << nlohmann::json{{"bench", "verify"},
                                    {"impl", "aegis"},
                                    {"model", name},
                                    {"input", "1x" + std::to_string(size) + "x" + std::to_string(size)},
                                    {"method", certify::bound_method_name(method)},
                                    {"relu", relu},
                                    {"norm", norm},
                                    {"eps", eps},
                                    {"batch", batch},
                                    {"device", dev},
                                    {"median_ms", ms},
                                    {"ms_per_example", ms / static_cast<double>(batch)},
                                    {"margin_sum", sum},
                                    {"margin_min", lowest}}
                         .dump()
                  << std::endl;
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_verify: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
