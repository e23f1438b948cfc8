// Convolution forward benchmark: the CPU's conv2d_forward on ResNet-20's layer shapes (batch
// 100, 3×3, padding 1), reporting milliseconds per call and multiply-adds per second counted as
// in the direct definition (N·O·C·9·H'·W'), whichever algorithm runs (im2col + sgemm, direct,
// or Winograd; see kernels/conv.h). bench/torch_conv.py times torch.nn.functional.conv2d on the
// same shapes.
//
// usage: bench_conv [--batch 100] [--repeats 20]
#include "kernels/conv.h"

#include "bench_args.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  using namespace aegis::kernels;
  std::int64_t batch = 100, repeats = 20;
  aegis::bench::parse_integer_options(argc, argv, {{"--batch", &batch}, {"--repeats", &repeats}});
  struct Layer {
    std::int64_t channels, size, out_channels, stride;
  };
  const Layer layers[] = {{3, 32, 16, 1},  {16, 32, 16, 1}, {16, 32, 32, 2},
                          {32, 16, 32, 1}, {32, 16, 64, 2}, {64, 8, 64, 1}};
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (const Layer& l : layers) {
    Conv2dGeometry g;
    g.batch = batch;
    g.in_channels = l.channels;
    g.height = g.width = l.size;
    g.out_channels = l.out_channels;
    g.kernel_h = g.kernel_w = 3;
    g.stride = l.stride;
    g.padding = 1;
    std::vector<float> x(static_cast<std::size_t>(batch * l.channels * l.size * l.size));
    std::vector<float> w(static_cast<std::size_t>(l.out_channels * l.channels * 9));
    std::vector<float> y(static_cast<std::size_t>(batch * l.out_channels * g.out_height() * g.out_width()));
    for (float& v : x) v = uniform(rng);
    for (float& v : w) v = uniform(rng);
    cpu::conv2d_forward(g, x.data(), w.data(), nullptr, y.data());  // warm-up
    std::vector<double> times;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      cpu::conv2d_forward(g, x.data(), w.data(), nullptr, y.data());
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    const double s = times[times.size() / 2];
    const double macs = static_cast<double>(batch * l.out_channels * l.channels * 9 * g.out_height() * g.out_width());
    std::cout << nlohmann::json{{"bench", "conv"},           {"impl", "aegis"}, {"batch", batch},
                                {"in_channels", l.channels}, {"size", l.size},  {"out_channels", l.out_channels},
                                {"stride", l.stride},        {"ms", s * 1e3},   {"gmac_per_s", macs / s / 1e9}}
                     .dump()
              << std::endl;
  }
  return 0;
}
