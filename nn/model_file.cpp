#include "nn/model_file.h"

#include <sstream>

#include "nn/serialize.h"

namespace aegis::nn {

namespace {
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

void save_classifier(const std::string& path, const Module& model, const ModelSpec& spec,
                     std::map<std::string, std::string> metadata) {
  metadata["aegis.format"] = "classifier-1";
  metadata["aegis.model"] = spec.name;
  metadata["aegis.input_shape"] = shape_csv(spec.input_shape);
  metadata["aegis.num_classes"] = std::to_string(spec.num_classes);
  metadata["aegis.activation"] = spec.activation.empty() ? default_activation(spec.name) : spec.activation;
  save_model(path, model, metadata);
}

LoadedClassifier load_classifier(const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  LoadedClassifier out;
  out.metadata = file.metadata;
  out.spec.name = require(file.metadata, "aegis.model", path);
  out.spec.activation = require(file.metadata, "aegis.activation", path);
  out.spec.num_classes = parse_int(require(file.metadata, "aegis.num_classes", path), "aegis.num_classes", path);
  std::stringstream ss(require(file.metadata, "aegis.input_shape", path));
  for (std::string item; std::getline(ss, item, ',');)
    out.spec.input_shape.push_back(parse_int(item, "aegis.input_shape", path));
  try {
    out.model = build_model(out.spec);
  } catch (const InvalidArgument& e) {
    AEGIS_THROW(IoError, path << ": metadata describes no buildable model: " << e.what());
  }
  load_model(path, *out.model);
  return out;
}

}  // namespace aegis::nn
