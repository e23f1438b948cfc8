// Scattering transform benchmark: F::scattering2d (kernels/scattering.h; J = 2, L = 8, Kymatio's
// Scattering2D) on a batch of 28 × 28 one-channel images, forward alone and forward + backward
// (the input gradient an attack needs), median of --repeats calls, in images per second.
// bench/kymatio_scattering.py times Kymatio itself on the same shapes.
//
// usage: bench_scattering [--batch 256] [--repeats 5] [--size 28]
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_args.h"
#include "nn/functional.h"
#include "runtime/autograd.h"

int main(int argc, char** argv) {
  using namespace aegis;
  std::int64_t batch = 256, size = 28, repeats = 5;
  bench::parse_integer_options(argc, argv, {{"--batch", &batch}, {"--repeats", &repeats}, {"--size", &size}});
  std::vector<float> values(static_cast<std::size_t>(batch * size * size));
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>((i * 7919) % 256) / 255.0f;
  const Tensor x = Tensor::from_vector(values, {batch, 1, size, size});
  for (const bool backward : {false, true}) {
    std::vector<double> times;
    for (int r = 0; r <= repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      autograd::Var in(x, backward);
      autograd::Var y = nn::F::scattering2d(in, 2, 8);
      if (backward) autograd::backward(y, Tensor::full(y.shape(), 1.0));
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) times.push_back(s);  // the first call builds the filters
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    std::cout << nlohmann::json{{"bench", "scattering"},
                                {"impl", "aegis"},
                                {"pass", backward ? "forward+backward" : "forward"},
                                {"batch", batch},
                                {"size", size},
                                {"J", 2},
                                {"L", 8},
                                {"ms", median * 1e3},
                                {"images_per_s", static_cast<double>(batch) / median}}
                     .dump()
              << "\n";
  }
  return 0;
}
