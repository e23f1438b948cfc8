// Classifier files: a safetensors file holding the model's parameters under their PyTorch
// state_dict names plus metadata that says how to rebuild it ("aegis.model", "aegis.input_shape",
// "aegis.num_classes", "aegis.activation") and where it came from ("aegis.dataset", and whatever
// the caller adds — the DP issue adds its privacy ledger here).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "nn/zoo.h"

namespace aegis::nn {

struct LoadedClassifier {
  std::shared_ptr<Module> model;
  ModelSpec spec;
  std::map<std::string, std::string> metadata;
};

// A path ending in ".onnx" is written by save_onnx (nn/onnx_export.h): the model must be a
// GraphModule imported from an ONNX file, and `metadata` goes into the file's metadata_props.
void save_classifier(const std::string& path, const Module& model, const ModelSpec& spec,
                     std::map<std::string, std::string> metadata = {});
// InvalidArgument unless save_classifier can write `model` to `path`: ONNX (".onnx") only for a
// model imported from an ONNX file, which in turn only ONNX can hold. Training checks this first.
void check_classifier_path(const std::string& path, const Module& model);
// Throws IoError naming the file when metadata is missing or inconsistent with the tensors.
// A path ending in ".onnx" is read by load_onnx (nn/onnx_import.h) instead: the model is then a
// GraphModule, spec.name is "onnx", and the input shape and number of classes come from the graph.
LoadedClassifier load_classifier(const std::string& path);

}  // namespace aegis::nn
