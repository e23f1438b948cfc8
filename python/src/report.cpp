// aegis.report: the trust profile of a model file (trust/trust_report.h) from Python.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <nlohmann/json.hpp>

#include "bindings.h"
#include "core/device.h"
#include "trust/trust_report.h"

namespace aegis::python {

namespace {

nb::object report(const std::string& model_file, const std::string& data, const std::string& data_dir,
                  const std::string& device, std::int64_t max, double sigma, std::int64_t n0, std::int64_t n,
                  double alpha, std::int64_t batch, const std::vector<double>& radii, double eps, int pgd_steps,
                  int suite_steps, bool membership, std::uint64_t seed, const std::string& plot, nb::object progress) {
  trust::TrustOptions o;
  o.model_file = model_file;
  o.data = data;
  o.data_dir = data_dir;
  o.device = choose_device(device).device;
  o.max = max;
  o.sigma = sigma;
  o.n0 = n0;
  o.n = n;
  o.alpha = alpha;
  o.batch = batch;
  if (!radii.empty()) o.radii = radii;
  o.eps = eps;
  o.pgd_steps = pgd_steps;
  o.suite_steps = suite_steps;
  o.membership = membership;
  o.seed = seed;
  o.plot = plot;
  PyProgress sink(progress);
  trust::TrustReport r;
  {
    nb::gil_scoped_release release;
    r = trust::trust_report(o, &sink);
  }
  return json_object(trust::to_json(r).dump());
}

}  // namespace

void register_report(nb::module_& m) {
  m.def("report", &report, nb::arg("model_file"), nb::arg("data"), nb::arg("data_dir"), nb::arg("device"),
        nb::arg("max"), nb::arg("sigma"), nb::arg("n0"), nb::arg("n"), nb::arg("alpha"), nb::arg("batch"),
        nb::arg("radii"), nb::arg("eps"), nb::arg("pgd_steps"), nb::arg("suite_steps"), nb::arg("membership"),
        nb::arg("seed"), nb::arg("plot"), nb::arg("progress").none());
}

}  // namespace aegis::python
