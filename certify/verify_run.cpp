// `aegis verify`'s run (certify/verify_run.h): input selection, one certify::verify per method,
// and the per-example file.
#include "certify/verify_run.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/norm.h"
#include "nn/job.h"
#include "nn/model_file.h"

namespace aegis::certify {

namespace {

// Rows `indices` of the test set, as one contiguous batch (images f32 [n, ...], labels i32 [n]).
nn::Dataset gather(const nn::Dataset& test, const std::vector<std::int64_t>& indices) {
  const Tensor images = test.images.to(Device::cpu()), labels = test.labels.to(Device::cpu());
  const std::int64_t n = static_cast<std::int64_t>(indices.size());
  const std::int64_t d = test.size() > 0 ? images.numel() / test.size() : 0;
  Shape shape = images.shape();
  shape[0] = n;
  nn::Dataset out = test;
  out.images = Tensor::empty(shape);
  out.labels = Tensor::empty({n}, DType::I32);
  const float* src = images.data<float>();
  const std::int32_t* src_labels = labels.data<std::int32_t>();
  float* dst = out.images.data<float>();
  std::int32_t* dst_labels = out.labels.data<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t at = indices[static_cast<std::size_t>(i)];
    std::copy(src + at * d, src + (at + 1) * d, dst + i * d);
    dst_labels[i] = src_labels[at];
  }
  return out;
}

std::string number(float v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", static_cast<double>(v));
  return buf;
}

// The directory part of `path` ("." when it has none), for the temporary file beside it.
std::string directory_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

void write_per_example(const std::string& path, const VerifyRun& run, const std::vector<BoundMethod>& methods) {
  AEGIS_CHECK(!path.empty(), "per-example file path is empty");
  AEGIS_CHECK(methods.size() == run.results.size(),
              "per-example file: " << methods.size() << " methods for " << run.results.size() << " results");
  std::string text = "idx\tlabel\tverified\tmargin_lower";
  for (const BoundMethod m : methods) text += std::string("\tmargin_") + bound_method_name(m);
  text += "\n";
  std::vector<std::vector<std::int32_t>> verified;
  std::vector<std::vector<float>> margins;
  for (const VerifyResult& r : run.results) {
    verified.push_back(r.verified.to_vector<std::int32_t>());
    margins.push_back(r.margin_lower.to_vector<float>());
  }
  for (std::size_t i = 0; i < run.indices.size(); ++i) {
    bool any = false;
    float best = -std::numeric_limits<float>::infinity();
    for (std::size_t m = 0; m < run.results.size(); ++m) {
      any = any || verified[m][i] != 0;
      best = std::max(best, margins[m][i]);
    }
    text += std::to_string(run.indices[i]) + "\t" + std::to_string(run.labels[i]) + "\t" + (any ? "1" : "0") + "\t" +
            number(best);
    for (std::size_t m = 0; m < run.results.size(); ++m) text += "\t" + number(margins[m][i]);
    text += "\n";
  }
  write_file_atomically(path, [&](int fd) { return write_fully(fd, text.data(), text.size()); });
}

VerifyRun run_verify(nn::Module& model, const nn::Dataset& test, const VerifyRunOptions& options,
                     const std::function<void(std::size_t, std::int64_t, std::int64_t)>& on_batch) {
  AEGIS_CHECK(!options.methods.empty(), "verify needs at least one bound method");
  for (std::size_t i = 0; i < options.methods.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      AEGIS_CHECK(options.methods[i] != options.methods[j],
                  "verify lists the bound method " << bound_method_name(options.methods[i]) << " twice");
  AEGIS_CHECK(options.batch_size >= 1, "verify batch size " << options.batch_size << " must be at least 1");
  if (!options.per_example_path.empty()) {
    // Checked before the work, which a missing directory would otherwise throw away at the end.
    const std::string dir = directory_of(options.per_example_path);
    AEGIS_CHECK_AS(
        IoError, ::access(dir.c_str(), W_OK) == 0,
        options.per_example_path << ": cannot write the per-example file in " << dir << ": " << std::strerror(errno));
  }
  VerifyRun run;
  run.indices = select_inputs(test.size(), options.inputs);
  const nn::Dataset chosen = gather(test, run.indices);
  run.labels = chosen.labels.to_vector<std::int32_t>();
  for (std::size_t m = 0; m < options.methods.size(); ++m) {
    BoundOptions o = options.bound;
    o.method = options.methods[m];
    run.results.push_back(verify(model, chosen, o, options.batch_size, [&](std::int64_t done, std::int64_t total) {
      if (on_batch) on_batch(m, done, total);
    }));
  }
  if (!options.per_example_path.empty()) write_per_example(options.per_example_path, run, options.methods);
  return run;
}

std::vector<BoundMethod> parse_bound_methods(const std::string& name) {
  if (name == "both") return {BoundMethod::Interval, BoundMethod::Linear};
  AEGIS_CHECK(name == "ibp" || name == "crown", "unknown bound method '" << name << "' (expected ibp, crown or both)");
  return {parse_bound_method(name)};
}

VerifyFileReport verify_file(const std::string& model_file, const std::string& dataset, const std::string& data_dir,
                             const VerifyRunOptions& options, Device device, ProgressSink* progress) {
  ProgressSink& p = progress_or_silent(progress);
  nn::LoadedClassifier loaded = nn::load_classifier(model_file);
  check_supported(*loaded.model);
  const nn::DatasetSplit split = nn::load_dataset(dataset, data_dir);
  nn::check_data_fits(split.test, loaded.spec, model_file, dataset);
  loaded.model->to(device);
  const auto t0 = std::chrono::steady_clock::now();
  std::size_t phase = options.methods.size();  // the method whose phase is open
  VerifyFileReport r;
  r.run = run_verify(*loaded.model, split.test, options, [&](std::size_t m, std::int64_t done, std::int64_t total) {
    if (m != phase) {
      if (phase < options.methods.size()) p.end("");
      p.begin(std::string("verify ") + bound_method_name(options.methods[m]), total, "examples");
      phase = m;
    }
    p.update(done, "");
  });
  if (phase < options.methods.size()) p.end("");
  for (const VerifyResult& v : r.run.results)
    if (!v.non_finite_parameters.empty()) {
      std::string names;
      for (const std::string& n : v.non_finite_parameters) names += (names.empty() ? "" : ", ") + n;
      p.warning(model_file + " has parameters holding NaN or Inf: " + names + "; no example is verified");
      break;
    }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.options = options;
  r.model_file = model_file;
  r.model = loaded.spec.name;
  r.dataset = dataset;
  r.device = device.str();
  return r;
}

nlohmann::json to_json(const VerifyFileReport& report) {
  const VerifyRunOptions& o = report.options;
  const bool both = o.methods.size() > 1;
  nlohmann::json j{{"model_file", report.model_file},
                   {"model", report.model},
                   {"dataset", report.dataset},
                   {"eps", o.bound.eps},
                   {"norm", norm_name(o.bound.norm)},
                   {"method", both ? std::string("both") : std::string(bound_method_name(o.methods.at(0)))},
                   {"relu", relu_relaxation_name(o.bound.relu)},
                   {"examples", static_cast<std::int64_t>(report.run.indices.size())},
                   {"skip", o.inputs.skip},
                   {"max", o.inputs.max},
                   {"shard", std::to_string(o.inputs.shard.index) + "/" + std::to_string(o.inputs.shard.count)},
                   {"device", report.device},
                   {"seconds", report.seconds}};
  if (!o.per_example_path.empty()) j["per_example"] = o.per_example_path;
  for (std::size_t m = 0; m < o.methods.size(); ++m) {
    const std::string name = bound_method_name(o.methods[m]);
    const VerifyResult& r = report.run.results[m];
    j["clean_accuracy"] = r.clean_accuracy;
    j["verified_accuracy_" + name] = r.verified_accuracy;
    j["seconds_" + name] = r.seconds;
    if (!r.non_finite_parameters.empty() && !j.contains("non_finite_parameters"))
      j["non_finite_parameters"] = r.non_finite_parameters;
  }
  return j;
}

}  // namespace aegis::certify
