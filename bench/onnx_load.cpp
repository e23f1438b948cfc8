// Load time of an ONNX model (nn/onnx_import.h): parsing, decoding the initializers, folding
// BatchNorm, building the GraphModule. The target is under 1 s for a 45 MB model;
// bench/make_onnx_model.py writes one (a ResNet-style CNN with BatchNorm, 11.2M parameters).
//   bench_onnx_load MODEL.onnx [REPEATS [ZOO_NAME [BATCH]]]
// Prints one JSON object: the file's size, the parameters, and the fastest and median load times.
// With ZOO_NAME (a model whose graph holds that zoo architecture under its state_dict names, such
// as `bench/make_onnx_model.py OUT cnn-res`), a second object compares forward passes without a
// tape (the smoothing workload) on BATCH random inputs through the graph module and through the
// zoo's model with the same weights: the target is the graph within 10% of the zoo.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "nn/onnx_import.h"
#include "nn/zoo.h"
#include "runtime/ops.h"

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
    if (argc > 3) {
      const aegis::nn::OnnxModel m = aegis::nn::load_onnx(path);
      aegis::nn::ModelSpec spec;
      spec.name = argv[3];
      spec.input_shape = m.model->input_shape();
      spec.num_classes = m.model->num_classes();
      spec.activation = "relu";
      auto zoo = aegis::nn::build_model(spec);
      const auto graph_params = m.model->named_parameters();
      for (const auto& named : zoo->named_parameters()) {
        const std::string& name = named.first;
        const aegis::nn::Var& p = named.second;
        auto it =
            std::find_if(graph_params.begin(), graph_params.end(), [&](const auto& g) { return g.first == name; });
        if (it == graph_params.end()) throw aegis::InvalidArgument("the graph has no parameter '" + name + "'");
        aegis::nn::Var q = p;
        q.mutable_value().copy_from(it->second.value());
      }
      const std::int64_t batch = argc > 4 ? std::stoll(argv[4]) : 1000;
      aegis::Shape shape = spec.input_shape;
      shape.insert(shape.begin(), batch);
      aegis::Tensor x = aegis::Tensor::empty(shape);
      aegis::ops::fill_uniform(x, aegis::philox::Key{1, aegis::philox::kPurposeGeneric, 0}, 0.0f, 1.0f);
      aegis::nn::FrozenScope frozen_graph(*m.model), frozen_zoo(*zoo);
      // Graph and zoo passes alternate, so that load from other processes hits both alike; the
      // first pair warms up and is dropped.
      auto once = [&](aegis::nn::Module& model) {
        const auto start = std::chrono::steady_clock::now();
        const aegis::nn::Var y = model.forward(aegis::nn::Var(x));
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      };
      std::vector<double> graph_t, zoo_t;
      for (int i = 0; i <= repeats; ++i) {
        const double g = once(*m.model), z = once(*zoo);
        if (i == 0) continue;
        graph_t.push_back(g);
        zoo_t.push_back(z);
      }
      std::sort(graph_t.begin(), graph_t.end());
      std::sort(zoo_t.begin(), zoo_t.end());
      const double graph_s = graph_t[graph_t.size() / 2], zoo_s = zoo_t[zoo_t.size() / 2];
      std::cout << nlohmann::json{{"bench", "onnx_forward"},
                                  {"zoo", spec.name},
                                  {"batch", batch},
                                  {"repeats", repeats},
                                  {"graph_median_s", graph_s},
                                  {"zoo_median_s", zoo_s},
                                  {"graph_over_zoo", graph_s / zoo_s}}
                       .dump()
                << "\n";
    }
  } catch (const aegis::Error& e) {
    std::cerr << "bench_onnx_load: " << e.message() << "\n";
    return 1;
  }
  return 0;
}
