// VNN-LIB files and instance lists (certify/vnnlib_verify.h): loading a model and a property,
// the result text, the instances CSV and the JSON of a result.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "certify/vnnlib_verify.h"
#include "core/atomic_file.h"
#include "nn/data/dataset.h"
#include "nn/model_file.h"
#include "nn/onnx_import.h"

namespace aegis::certify {

namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

std::string folder_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

std::string trim(const std::string& s) {
  const std::size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A model file as load_classifier reads it, or a gzip-compressed ONNX file (".onnx.gz", as the
// VNN-COMP benchmarks ship them).
nn::LoadedClassifier load_model(const std::string& path) {
  if (!ends_with(path, ".onnx.gz") && !ends_with(path, ".ONNX.gz")) return nn::load_classifier(path);
  const std::vector<unsigned char> bytes = nn::detail::read_file_bytes(path);
  const std::string folder = folder_of(path);
  nn::OnnxModel onnx = nn::load_onnx_bytes(std::string(bytes.begin(), bytes.end()), path,
                                           folder.empty() ? "." : folder.substr(0, folder.size() - 1));
  nn::LoadedClassifier out;
  out.spec.name = "onnx";
  out.spec.input_shape = onnx.model->input_shape();
  out.spec.num_classes = onnx.model->num_classes();
  out.metadata = std::move(onnx.metadata);
  out.model = std::move(onnx.model);
  return out;
}

// `path`, or `path`.gz when only the compressed file exists.
std::string existing(const std::string& path) {
  return !nn::detail::file_exists(path) && nn::detail::file_exists(path + ".gz") ? path + ".gz" : path;
}

}  // namespace

std::string vnn_result_text(const VnnResult& r) {
  std::string text = std::string(vnn_answer_name(r.answer)) + "\n";
  if (r.answer != VnnAnswer::Sat) return text;
  text += "(";
  for (std::size_t i = 0; i < r.x.size(); ++i)
    text += std::string(i == 0 ? "(" : " (") + "X_" + std::to_string(i) + " " + number(r.x[i]) + ")\n";
  for (std::size_t j = 0; j < r.y.size(); ++j)
    text += " (Y_" + std::to_string(j) + " " + number(r.y[j]) + ")" + (j + 1 == r.y.size() ? ")\n" : "\n");
  return text;
}

VnnFileReport verify_vnnlib_file(const std::string& model_file, const std::string& property_file,
                                 const VnnOptions& options, Device device, const std::string& out_path) {
  nn::LoadedClassifier loaded = load_model(model_file);
  check_supported(*loaded.model);
  const VnnProperty property = load_vnnlib(property_file);
  AEGIS_CHECK_AS(ShapeError, property.num_outputs == loaded.spec.num_classes,
                 property_file << " declares " << property.num_outputs << " outputs Y_j, but " << model_file << " has "
                               << loaded.spec.num_classes);
  loaded.model->to(device);
  VnnFileReport r;
  r.model_file = model_file;
  r.property_file = property_file;
  r.device = device.str();
  r.options = options;
  r.result = verify_vnnlib(*loaded.model, loaded.spec.input_shape, property, options);
  if (!out_path.empty()) {
    const std::string text = vnn_result_text(r.result);
    write_file_atomically(out_path, [&](int fd) { return write_fully(fd, text.data(), text.size()); });
  }
  return r;
}

std::vector<VnnInstance> read_instances(const std::string& csv_path) {
  std::ifstream in(csv_path);
  if (!in) AEGIS_THROW(IoError, csv_path << ": cannot read the instances file");
  const std::string base = folder_of(csv_path);
  std::vector<VnnInstance> out;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (trim(line).empty()) continue;
    std::vector<std::string> cells;
    for (std::size_t at = 0;;) {
      const std::size_t comma = line.find(',', at);
      cells.push_back(trim(line.substr(at, comma == std::string::npos ? std::string::npos : comma - at)));
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
    if (cells.size() != 3 || cells[0].empty() || cells[1].empty())
      AEGIS_THROW(IoError,
                  csv_path << ":" << line_no << ": expected 'onnx,vnnlib,timeout', got '" << trim(line) << "'");
    char* end = nullptr;
    const double timeout = std::strtod(cells[2].c_str(), &end);
    if (cells[2].empty() || end != cells[2].c_str() + cells[2].size() || !std::isfinite(timeout) || timeout < 0.0)
      AEGIS_THROW(IoError,
                  csv_path << ":" << line_no << ": timeout '" << cells[2] << "' is not a number of seconds ≥ 0");
    auto resolve = [&](const std::string& p) { return existing(p[0] == '/' ? p : base + p); };
    out.push_back({resolve(cells[0]), resolve(cells[1]), timeout});
  }
  return out;
}

std::vector<VnnFileReport> run_instances(const std::string& csv_path, const VnnOptions& options, Device device,
                                         const std::function<void(const VnnFileReport&)>& on_instance) {
  std::vector<VnnFileReport> out;
  for (const VnnInstance& inst : read_instances(csv_path)) {
    VnnOptions o = options;
    o.timeout = inst.timeout;
    try {
      out.push_back(verify_vnnlib_file(inst.model_file, inst.property_file, o, device));
    } catch (const Error& e) {
      VnnFileReport failed;
      failed.model_file = inst.model_file;
      failed.property_file = inst.property_file;
      failed.device = device.str();
      failed.options = o;
      failed.result.reason = "error";
      failed.error = e.message();
      out.push_back(std::move(failed));
    }
    if (on_instance) on_instance(out.back());
  }
  return out;
}

nlohmann::json to_json(const VnnFileReport& report) {
  const VnnResult& r = report.result;
  nlohmann::json j{{"model_file", report.model_file},
                   {"vnnlib", report.property_file},
                   {"result", report.error.empty() ? vnn_answer_name(r.answer) : "error"},
                   {"reason", r.reason},
                   {"disjuncts", r.disjuncts},
                   {"disjuncts_verified", r.disjuncts_verified},
                   {"timeout", report.options.timeout},
                   {"device", report.device},
                   {"seconds", r.seconds}};
  if (!report.error.empty()) j["error"] = report.error;
  if (r.answer == VnnAnswer::Sat) {
    j["x"] = r.x;
    j["y"] = r.y;
  }
  return j;
}

}  // namespace aegis::certify
