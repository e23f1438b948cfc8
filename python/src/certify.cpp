// aegis.certify: randomized smoothing (Cohen et al. 2019, certify/smoothing.h) from Python.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "bindings.h"
#include "certify/analyze.h"
#include "certify/certify_run.h"
#include "certify/smoothing.h"
#include "core/error.h"
#include "core/math_precision.h"

namespace aegis::python {

namespace {

certify::SmoothingOptions smoothing_options(double sigma, std::int64_t n0, std::int64_t n, double alpha,
                                            std::int64_t batch, std::uint64_t seed, const std::string& precision) {
  certify::SmoothingOptions o;
  o.sigma = sigma;
  o.n0 = n0;
  o.n = n;
  o.alpha = alpha;
  o.batch = batch;
  o.seed = seed;
  o.precision = parse_math_precision(precision);
  certify::check_smoothing_options(o);
  return o;
}

// Key indices of the inputs: given, or 0 … m−1. The noise of input i is keyed by ids[i], so the
// certificate of test image idx equals the command line's when ids holds the test-set indices.
std::vector<std::uint64_t> key_ids(const std::optional<Array>& ids, std::int64_t m) {
  std::vector<std::uint64_t> out(static_cast<std::size_t>(m));
  if (!ids) {
    for (std::int64_t i = 0; i < m; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::uint64_t>(i);
    return out;
  }
  const std::vector<std::int64_t> v = index_vector(*ids, m, "ids");
  for (std::int64_t i = 0; i < m; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::uint64_t>(v[i]);
  return out;
}

nb::dict certify_inputs(Model& model, const Array& x, const std::optional<Array>& ids, double sigma, std::int64_t n0,
                        std::int64_t n, double alpha, std::int64_t batch, std::uint64_t seed,
                        const std::string& precision, nb::object progress) {
  const certify::SmoothingOptions o = smoothing_options(sigma, n0, n, alpha, batch, seed, precision);
  const Tensor input = model_input(model, x);
  const std::vector<std::uint64_t> keys = key_ids(ids, input.shape()[0]);
  PyProgress sink(progress);
  std::vector<certify::Certificate> certs;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    certify::SmoothedClassifier smoothed(*model.module, model.spec.input_shape, model.spec.num_classes, model.device);
    std::int64_t samples = 0;
    sink.begin("certify", input.shape()[0] * (o.n0 + o.n), "samples");
    certs = smoothed.certify(input, keys, o, [&](std::int64_t rows) {
      samples += rows;
      sink.update(samples, "");
    });
    sink.end("");
  }
  std::vector<std::int64_t> prediction, selected, count;
  std::vector<double> radius, p_lower;
  for (const auto& c : certs) {
    prediction.push_back(c.prediction);
    radius.push_back(c.radius);
    p_lower.push_back(c.p_lower);
    selected.push_back(c.selected);
    count.push_back(c.count);
  }
  nb::dict out;
  out["prediction"] = vector_array(prediction);
  out["radius"] = vector_array(radius);
  out["p_lower"] = vector_array(p_lower);
  out["selected"] = vector_array(selected);
  out["count"] = vector_array(count);
  return out;
}

nb::dict predict_inputs(Model& model, const Array& x, const std::optional<Array>& ids, double sigma, std::int64_t n,
                        double alpha, std::int64_t batch, std::uint64_t seed, const std::string& precision,
                        nb::object progress) {
  const certify::SmoothingOptions o = smoothing_options(sigma, 1, n, alpha, batch, seed, precision);
  const Tensor input = model_input(model, x);
  const std::vector<std::uint64_t> keys = key_ids(ids, input.shape()[0]);
  PyProgress sink(progress);
  std::vector<certify::Prediction> preds;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    certify::SmoothedClassifier smoothed(*model.module, model.spec.input_shape, model.spec.num_classes, model.device);
    std::int64_t samples = 0;
    sink.begin("predict", input.shape()[0] * o.n, "samples");
    preds = smoothed.predict(input, keys, o, [&](std::int64_t rows) {
      samples += rows;
      sink.update(samples, "");
    });
    sink.end("");
  }
  std::vector<std::int64_t> prediction, count_a, count_b;
  std::vector<double> p_value;
  for (const auto& p : preds) {
    prediction.push_back(p.prediction);
    p_value.push_back(p.p_value);
    count_a.push_back(p.count_a);
    count_b.push_back(p.count_b);
  }
  nb::dict out;
  out["prediction"] = vector_array(prediction);
  out["p_value"] = vector_array(p_value);
  out["count_a"] = vector_array(count_a);
  out["count_b"] = vector_array(count_b);
  return out;
}

// FNV-1a of the images' and labels' bytes: the settings sidecar names in-memory data by it, so
// resuming a sweep on other arrays is refused as resuming on another dataset is.
std::string array_data_name(const nn::Dataset& d) {
  std::uint64_t h = 14695981039346656037ULL;
  const auto mix = [&h](const Tensor& t) {
    const auto* p = static_cast<const unsigned char*>(t.raw_data());
    for (std::size_t i = 0; i < t.nbytes(); ++i) {
      h ^= p[i];
      h *= 1099511628211ULL;
    }
  };
  mix(d.images);
  mix(d.labels);
  char buf[64];
  std::snprintf(buf, sizeof buf, "arrays:%016llx", static_cast<unsigned long long>(h));
  return buf;
}

nb::object sweep(Model& model, const std::string& out, const std::vector<double>& sigmas, std::int64_t n0,
                 std::int64_t n, double alpha, std::int64_t batch, std::uint64_t seed, const std::string& precision,
                 std::int64_t skip, std::int64_t max, const std::string& shard, const std::string& mode,
                 const std::vector<double>& radii, const std::optional<std::string>& data,
                 const std::optional<Array>& x, const std::optional<Array>& y, const std::string& data_dir,
                 nb::object progress) {
  if (model.path.empty())
    throw nb::value_error(
        "a sweep records the model file and checks its fingerprint when it resumes: save the model first "
        "(model.save(path)) or load it from a file");
  certify::CertifyRunOptions o;
  o.sigmas = sigmas;
  o.smoothing = smoothing_options(sigmas.empty() ? 0.25 : sigmas.front(), n0, n, alpha, batch, seed, precision);
  o.inputs = {skip, max, certify::parse_shard(shard)};
  o.out = out;
  if (mode == "create")
    o.mode = certify::OpenMode::Create;
  else if (mode == "resume")
    o.mode = certify::OpenMode::Resume;
  else if (mode == "overwrite")
    o.mode = certify::OpenMode::Overwrite;
  else
    throw nb::value_error(("mode '" + mode + "' is not one of create, resume, overwrite").c_str());
  o.radii = radii;
  o.model_file = model.path;
  PyProgress sink(progress);
  certify::CertifyFileReport report;
  if (data) {
    if (x || y) throw nb::value_error("pass either data (a dataset spec) or x and y (arrays), not both");
    o.data = *data;
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    // Exactly `aegis certify`: the model is read from its file, as the command line reads it.
    report = certify::certify_file(o, data_dir, model.device, &sink);
  } else {
    if (!x || !y) throw nb::value_error("pass data (a dataset spec such as 'fashion-mnist') or both x and y");
    const nn::Dataset d = array_dataset(model, *x, *y);
    o.data = array_data_name(d);
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    certify::SmoothedClassifier smoothed(*model.module, model.spec.input_shape, model.spec.num_classes, model.device);
    report.options = o;
    report.model = model.spec.name;
    report.device = model.device.str();
    report.run = certify::run_certify(smoothed, d, o, &sink);
  }
  return json_object(certify::to_json(report).dump());
}

nb::object analyze(const std::vector<std::string>& files, const std::vector<double>& radii,
                   std::optional<double> sigma, bool envelope) {
  certify::AnalyzeOptions o;
  o.radii = radii;
  o.sigma = sigma;
  o.envelope = envelope;
  certify::Analysis a;
  {
    nb::gil_scoped_release release;
    a = certify::analyze_sweeps(files, o);
  }
  return json_object(certify::to_json(a, envelope).dump());
}

}  // namespace

void register_certify(nb::module_& m) {
  m.def("certify", &certify_inputs, nb::arg("model"), nb::arg("x"), nb::arg("ids").none() = nb::none(),
        nb::arg("sigma"), nb::arg("n0"), nb::arg("n"), nb::arg("alpha"), nb::arg("batch"), nb::arg("seed"),
        nb::arg("precision"), nb::arg("progress").none());
  m.def("predict", &predict_inputs, nb::arg("model"), nb::arg("x"), nb::arg("ids").none() = nb::none(),
        nb::arg("sigma"), nb::arg("n"), nb::arg("alpha"), nb::arg("batch"), nb::arg("seed"), nb::arg("precision"),
        nb::arg("progress").none());
  m.def("sweep", &sweep, nb::arg("model"), nb::arg("out"), nb::arg("sigmas"), nb::arg("n0"), nb::arg("n"),
        nb::arg("alpha"), nb::arg("batch"), nb::arg("seed"), nb::arg("precision"), nb::arg("skip"), nb::arg("max"),
        nb::arg("shard"), nb::arg("mode"), nb::arg("radii"), nb::arg("data").none(), nb::arg("x").none(),
        nb::arg("y").none(), nb::arg("data_dir"), nb::arg("progress").none());
  m.def("sigma_out_path", &certify::sigma_out_path, nb::arg("out"), nb::arg("sigma"));
  m.def("analyze", &analyze, nb::arg("files"), nb::arg("radii"), nb::arg("sigma").none(), nb::arg("envelope"));
}

}  // namespace aegis::python
