// The zoo's model of an imported graph's architecture with the graph's weights copied in by name
// (every parameter name must match: the graph keeps torch's state_dict names), for the tests that
// compare an imported zoo architecture with the zoo's own model.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "nn/graph_module.h"
#include "nn/model_file.h"
#include "nn/zoo.h"

namespace aegis::testing {

inline std::shared_ptr<nn::Module> zoo_twin(const nn::GraphModule& graph, const std::string& zoo_name) {
  nn::ModelSpec spec;
  spec.name = zoo_name;
  spec.input_shape = graph.input_shape();
  spec.num_classes = graph.num_classes();
  spec.activation = "relu";
  auto zoo = nn::build_model(spec);
  const auto graph_params = graph.named_parameters();
  EXPECT_EQ(zoo->named_parameters().size(), graph_params.size());
  for (const auto& named : zoo->named_parameters()) {
    const std::string& name = named.first;
    auto it = std::find_if(graph_params.begin(), graph_params.end(), [&](const auto& gp) { return gp.first == name; });
    if (it == graph_params.end()) {
      ADD_FAILURE() << "the graph has no parameter '" << name << "'";
      continue;
    }
    autograd::Var q = named.second;
    q.mutable_value().copy_from(it->second.value());
  }
  return zoo;
}

// The zoo twin of the ONNX file `onnx_path` written as an aegis model file at `path` (the
// safetensors twin of the same weights, for comparing commands on the two files).
inline void save_zoo_twin(const std::string& onnx_path, const std::string& zoo_name, const std::string& path) {
  const nn::LoadedClassifier loaded = nn::load_classifier(onnx_path);
  auto zoo = zoo_twin(dynamic_cast<const nn::GraphModule&>(*loaded.model), zoo_name);
  nn::ModelSpec spec = loaded.spec;
  spec.name = zoo_name;
  spec.activation = "relu";
  nn::save_classifier(path, *zoo, spec);
}

}  // namespace aegis::testing
