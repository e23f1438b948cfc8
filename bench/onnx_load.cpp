// Load time of an ONNX model (nn/onnx_import.h): parsing, decoding the initializers, folding
// BatchNorm, building the GraphModule. The target is under 1 s for a 45 MB model;
// bench/make_onnx_model.py writes one (a ResNet-style CNN with BatchNorm, 11.2M parameters).
//   bench_onnx_load MODEL.onnx [REPEATS]
// Prints one JSON object: the file's size, the parameters, and the fastest and median load times.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "nn/onnx_import.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench_onnx_load MODEL.onnx [REPEATS]\n";
    return 2;
  }
  const std::string path = argv[1];
  const int repeats = argc > 2 ? std::max(1, std::stoi(argv[2])) : 5;
  try {
    std::vector<double> seconds;
    std::int64_t params = 0;
    for (int i = 0; i < repeats; ++i) {
      const auto start = std::chrono::steady_clock::now();
      const aegis::nn::OnnxModel m = aegis::nn::load_onnx(path);
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      params = m.model->num_parameters();
    }
    std::sort(seconds.begin(), seconds.end());
    nlohmann::json j{{"bench", "onnx_load"},
                     {"file", path},
                     {"bytes", std::filesystem::file_size(path)},
                     {"parameters", params},
                     {"repeats", repeats},
                     {"min_s", seconds.front()},
                     {"median_s", seconds[seconds.size() / 2]}};
    std::cout << j.dump() << "\n";
  } catch (const aegis::Error& e) {
    std::cerr << "bench_onnx_load: " << e.message() << "\n";
    return 1;
  }
  return 0;
}
