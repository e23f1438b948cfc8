#include "nn/model_file.h"

#include <sstream>

#include "nn/onnx_export.h"
#include "nn/onnx_import.h"
#include "nn/serialize.h"

namespace aegis::nn {

namespace {
constexpr std::int64_t kMaxInputPerWeight = 16;
constexpr std::int64_t kMaxClasses = std::int64_t{1} << 20;

std::string shape_csv(const Shape& s) {
  std::ostringstream os;
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  return os.str();
}

const std::string& require(const std::map<std::string, std::string>& meta, const std::string& key,
                           const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end())
    AEGIS_THROW(IoError, path << ": not an aegis classifier file (metadata key '" << key << "' is missing)");
  return it->second;
}

std::int64_t parse_int(const std::string& text, const std::string& key, const std::string& path) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    AEGIS_THROW(IoError, path << ": metadata '" << key << "' = '" << text << "' is not an integer");
  return v;
}
}  // namespace

void check_classifier_path(const std::string& path, const Module& model) {
  const auto* graph = dynamic_cast<const GraphModule*>(&model);
  const bool imported = graph != nullptr && !graph->onnx_origin().path.empty();
  if (is_onnx_path(path))
    AEGIS_CHECK(imported, path << ": aegis writes ONNX only for a model imported from an ONNX file (train --init "
                                  "net.onnx); write this model as .safetensors");
  else
    AEGIS_CHECK(graph == nullptr, path << ": a model imported from ONNX (" << graph->source()
                                       << ") is written back as ONNX: give a path ending in .onnx");
}

void save_classifier(const std::string& path, const Module& model, const ModelSpec& spec,
                     std::map<std::string, std::string> metadata) {
  check_classifier_path(path, model);
  if (is_onnx_path(path)) {
    metadata["aegis.model"] = "onnx";
    metadata["aegis.input_shape"] = shape_csv(spec.input_shape);
    metadata["aegis.num_classes"] = std::to_string(spec.num_classes);
    save_onnx(dynamic_cast<const GraphModule&>(model), path, metadata);
    return;
  }
  metadata["aegis.format"] = "classifier-1";
  metadata["aegis.model"] = spec.name;
  metadata["aegis.input_shape"] = shape_csv(spec.input_shape);
  metadata["aegis.num_classes"] = std::to_string(spec.num_classes);
  metadata["aegis.activation"] = spec.activation.empty() ? default_activation(spec.name) : spec.activation;
  save_model(path, model, metadata);
}

LoadedClassifier load_classifier(const std::string& path) {
  if (is_onnx_path(path)) {
    OnnxModel onnx = load_onnx(path);
    LoadedClassifier out;
    out.spec.name = "onnx";
    out.spec.input_shape = onnx.model->input_shape();
    out.spec.num_classes = onnx.model->num_classes();
    if (out.spec.num_classes < 2 || out.spec.num_classes > kMaxClasses)
      AEGIS_THROW(Unsupported, path << ": the graph outputs " << out.spec.num_classes << " values per example; a classifier "
                                    << "has between 2 and " << kMaxClasses << " classes");
    out.metadata = std::move(onnx.metadata);
    out.metadata["aegis.model"] = "onnx";
    out.model = std::move(onnx.model);
    return out;
  }
  SafetensorsFile file = load_safetensors(path);
  LoadedClassifier out;
  out.metadata = file.metadata;
  out.spec.name = require(file.metadata, "aegis.model", path);
  out.spec.activation = require(file.metadata, "aegis.activation", path);
  out.spec.num_classes = parse_int(require(file.metadata, "aegis.num_classes", path), "aegis.num_classes", path);
  const std::string& input_text = require(file.metadata, "aegis.input_shape", path);
  std::stringstream ss(input_text);
  for (std::string item; std::getline(ss, item, ',');)
    out.spec.input_shape.push_back(parse_int(item, "aegis.input_shape", path));
  // The model is built from these numbers before its weights are compared with the file's, so
  // they are checked first: sizes ≥ 1 whose product fits in int64, classes ≥ 2, and an input no
  // larger than kMaxInputPerWeight times all the file's weights together. Every classifier has
  // at least about as many weights as input elements (an mlp's first layer alone has 256 per
  // input element); a file claiming a far larger input is malformed, and building the model for
  // the claim (`1,1000,1000` in a file of a few bytes) would allocate gigabytes first.
  std::int64_t input_numel = 1;
  for (std::int64_t d : out.spec.input_shape)
    if (d < 1 || __builtin_mul_overflow(input_numel, d, &input_numel))
      AEGIS_THROW(IoError, path << ": metadata 'aegis.input_shape' = '" << input_text
                                << "' is not a list of sizes ≥ 1 whose product fits in 64 bits");
  if (out.spec.num_classes < 2 || out.spec.num_classes > kMaxClasses)
    AEGIS_THROW(IoError, path << ": metadata 'aegis.num_classes' = " << out.spec.num_classes << " is not in [2, "
                              << kMaxClasses << "]");
  std::int64_t weights = 0;
  for (const auto& [name, tensor] : file.tensors) weights += tensor.numel();
  if (input_numel / kMaxInputPerWeight > weights)
    AEGIS_THROW(IoError, path << ": metadata 'aegis.input_shape' = '" << input_text << "' (" << input_numel
                              << " elements) is far larger than the file's " << weights
                              << " weights can serve; the file is malformed");
  try {
    out.model = build_model(out.spec);
  } catch (const InvalidArgument& e) {
    AEGIS_THROW(IoError, path << ": metadata describes no buildable model: " << e.what());
  }
  load_model(path, *out.model);
  return out;
}

}  // namespace aegis::nn
