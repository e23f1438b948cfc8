// aegis.verify: deterministic bounds (IBP, CROWN-style linear bounds; certify/bounds.h) from Python.
#include <nanobind/stl/string.h>

#include "bindings.h"
#include "certify/bounds.h"
#include "core/error.h"

namespace aegis::python {

namespace {

nb::dict verify(Model& model, const Array& x, const Array& y, double eps, const std::string& norm,
                const std::string& method, const std::string& relu, std::int64_t batch, nb::object progress) {
  const Tensor input = model_input(model, x);
  const Tensor labels = label_tensor(y, input.shape()[0], model.spec.num_classes, "y");
  certify::BoundOptions o;
  o.norm = parse_norm(norm);
  o.eps = eps;
  o.method = certify::parse_bound_method(method);
  o.relu = certify::parse_relu_relaxation(relu);
  AEGIS_CHECK(batch >= 1, "batch " << batch << " must be at least 1");
  PyProgress sink(progress);
  certify::VerifyResult r;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(model.mutex);
    sink.begin(std::string("verify ") + certify::bound_method_name(o.method), input.shape()[0], "examples");
    r = certify::verify(*model.module, input.to(model.device), labels, o, batch,
                        [&](std::int64_t done, std::int64_t) { sink.update(done, ""); });
    sink.end("");
  }
  nb::dict out;
  out["margin_lower"] = to_array(r.margin_lower);
  out["verified"] = to_array(r.verified);
  out["clean_accuracy"] = r.clean_accuracy;
  out["verified_accuracy"] = r.verified_accuracy;
  out["seconds"] = r.seconds;
  return out;
}

}  // namespace

void register_verify(nb::module_& m) {
  m.def("verify", &verify, nb::arg("model"), nb::arg("x"), nb::arg("y"), nb::arg("eps"), nb::arg("norm"),
        nb::arg("method"), nb::arg("relu"), nb::arg("batch"), nb::arg("progress").none());
}

}  // namespace aegis::python
