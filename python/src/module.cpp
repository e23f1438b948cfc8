// The aegis Python module: errors, the model handle, datasets and progress. The submodules
// (certify, attacks, privacy, verify) register themselves from their own files.
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <optional>

#include "bindings.h"
#include "core/config.h"
#include "core/device.h"
#include "core/error.h"
#include "nn/data/dataset.h"
#include "nn/model_file.h"
#include "nn/onnx_import.h"

namespace aegis::python {

// ---- progress --------------------------------------------------------------------------------
void PyProgress::begin(const std::string& label, std::int64_t total, const std::string& unit) {
  call("begin", label, total, unit);
}
void PyProgress::update(std::int64_t done, const std::string& extra) { call("update", done, extra); }
void PyProgress::end(const std::string& extra) { call("end", extra); }
void PyProgress::info(const std::string& message) { call("info", message); }
void PyProgress::warning(const std::string& message) { call("warning", message); }
void PyProgress::poll() {
  nb::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw nb::python_error();
}

nb::object json_object(const std::string& text) {
  return nb::module_::import_("json").attr("loads")(text);
}

namespace {

std::shared_ptr<Model> make_model(nn::LoadedClassifier loaded, std::string path) {
  auto m = std::make_shared<Model>();
  m->module = std::move(loaded.model);
  m->spec = std::move(loaded.spec);
  m->metadata = std::move(loaded.metadata);
  m->path = std::move(path);
  m->module->train(false);
  return m;
}

std::shared_ptr<Model> load(const std::string& path) {
  nn::LoadedClassifier loaded;
  {
    nb::gil_scoped_release release;
    loaded = nn::load_classifier(path);
  }
  return make_model(std::move(loaded), path);
}

std::shared_ptr<Model> load_onnx_bytes(nb::bytes data, const std::string& name) {
  const std::string bytes(data.c_str(), data.size());
  nn::OnnxModel onnx;
  {
    nb::gil_scoped_release release;
    onnx = nn::load_onnx_bytes(bytes, name, ".");
  }
  nn::LoadedClassifier loaded;
  loaded.spec.name = "onnx";
  loaded.spec.input_shape = onnx.model->input_shape();
  loaded.spec.num_classes = onnx.model->num_classes();
  loaded.metadata = std::move(onnx.metadata);
  loaded.metadata["aegis.model"] = "onnx";
  loaded.model = std::move(onnx.model);
  return make_model(std::move(loaded), "");
}

std::shared_ptr<Model> zoo(const std::string& name, std::vector<std::int64_t> input_shape, std::int64_t num_classes,
                           const std::string& activation, std::uint64_t seed) {
  nn::ModelSpec spec;
  spec.name = name;
  spec.input_shape = Shape(input_shape.begin(), input_shape.end());
  spec.num_classes = num_classes;
  spec.activation = activation;
  spec.seed = seed;
  nn::LoadedClassifier loaded;
  loaded.model = nn::build_model(spec);
  loaded.spec = spec;
  loaded.metadata["aegis.model"] = name;
  return make_model(std::move(loaded), "");
}

nb::object forward(Model& m, const Array& x) {
  const Tensor input = model_input(m, x);
  Tensor logits;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(m.mutex);
    nn::FrozenScope frozen(*m.module);
    logits = m.module->forward(nn::Var(input.to(m.device), false)).value();
  }
  // Results live where the input did (a CPU array in, a CPU array out, whatever the model's device).
  return to_array(logits.to(input.device()));
}

void to_device(Model& m, const std::string& spec) {
  const DeviceChoice c = choose_device(spec);
  nb::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(m.mutex);
  m.module->to(c.device);
  m.device = c.device;
}

void save(Model& m, const std::string& path, const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> metadata = m.metadata;
  for (const auto& [k, v] : extra) metadata[k] = v;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(m.mutex);
    // The file format's own keys are written from the spec; the rest of the metadata (a privacy
    // ledger, the smoothing σ, ...) travels along.
    nn::save_classifier(path, *m.module, m.spec, metadata);
  }
  m.metadata = metadata;
  m.path = path;
}

nb::tuple load_data(const std::string& spec, const std::string& data_dir) {
  nn::DatasetSplit split;
  {
    nb::gil_scoped_release release;
    split = nn::load_dataset(spec, data_dir);
  }
  return nb::make_tuple(to_array(split.train.images), to_array(split.train.labels), to_array(split.test.images),
                        to_array(split.test.labels));
}

// The data pointer aegis reads for `x` (after the conversion every call makes): equal to the
// caller's own pointer when no copy was made. For tests of the zero-copy path.
std::uintptr_t data_pointer(const Array& x) {
  return reinterpret_cast<std::uintptr_t>(float_tensor(x, "x").raw_data());
}

PyObject* new_exception(nb::module_& m, const char* name, PyObject* base) {
  const std::string full = std::string("aegis.") + name;
  PyObject* type = PyErr_NewException(full.c_str(), base, nullptr);
  m.attr(name) = nb::borrow(type);
  return type;
}

void raise(PyObject* type, const Error& e) {
  nb::object exc = nb::steal(PyObject_CallFunction(type, "s", e.message().c_str()));
  if (!exc.is_valid()) return;  // the call's own error is set
  PyObject_SetAttrString(exc.ptr(), "location", nb::str(e.location().c_str()).ptr());
  PyErr_SetObject(type, exc.ptr());
}

// The array aegis reads for `x`, handed straight back: a DLPack round trip (for the benchmark of
// the zero-copy path and its tests; the result shares x's memory and keeps x alive).
nb::object round_trip(const Array& x) { return to_array(float_tensor(x, "x")); }

// Seconds of `repeats` forward passes of x in C++ (the same work as model(x) without the Python
// layer): the benchmark of the per-call overhead subtracts it.
double forward_seconds(Model& m, const Array& x, int repeats) {
  const Tensor input = model_input(m, x);
  nb::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(m.mutex);
  nn::FrozenScope frozen(*m.module);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) {
    Tensor logits = m.module->forward(nn::Var(input.to(m.device), false)).value().to(input.device());
    (void)logits;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

void register_core(nb::module_& m) {
  // aegis's typed errors, as Python exceptions carrying the message the command line prints
  // (Error::message(), without the throwing file:line, which is kept in the `location` attribute).
  static PyObject* error = new_exception(m, "Error", PyExc_RuntimeError);
  static PyObject* invalid = new_exception(m, "InvalidArgument", PyExc_ValueError);
  static PyObject* shape = new_exception(m, "ShapeError", PyExc_ValueError);
  static PyObject* io = new_exception(m, "IoError", PyExc_OSError);
  static PyObject* device = new_exception(m, "DeviceError", PyExc_RuntimeError);
  static PyObject* unsupported = new_exception(m, "Unsupported", PyExc_ValueError);
  static PyObject* numeric = new_exception(m, "NumericError", PyExc_ArithmeticError);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const InvalidArgument& e) {
      raise(invalid, e);
    } catch (const ShapeError& e) {
      raise(shape, e);
    } catch (const IoError& e) {
      raise(io, e);
    } catch (const DeviceError& e) {
      raise(device, e);
    } catch (const Unsupported& e) {
      raise(unsupported, e);
    } catch (const NumericError& e) {
      raise(numeric, e);
    } catch (const Error& e) {
      raise(error, e);
    }
  });

  nb::class_<Model>(m, "Model", "A classifier: a zoo architecture or an imported ONNX graph, with its file's metadata.")
      .def_prop_ro("name", [](const Model& s) { return s.spec.name; }, "zoo architecture name, or 'onnx'")
      .def_prop_ro(
          "input_shape",
          [](const Model& s) { return std::vector<std::int64_t>(s.spec.input_shape.begin(), s.spec.input_shape.end()); },
          "(C, H, W) of one example; inputs are float32 in [0, 1]")
      .def_prop_ro("num_classes", [](const Model& s) { return s.spec.num_classes; })
      .def_prop_ro("metadata", [](const Model& s) { return s.metadata; }, "the model file's metadata (str -> str)")
      .def_prop_ro("path", [](const Model& s) { return s.path; }, "file loaded from or last saved to ('' if none)")
      .def_prop_ro("device", [](const Model& s) { return s.device.str(); })
      .def_prop_ro("num_parameters", [](const Model& s) { return s.module->num_parameters(); })
      .def("summary", [](const Model& s) { return s.module->summary(); })
      .def("forward", &forward, nb::arg("x"), "logits [N, num_classes] of images x [N, C, H, W] in [0, 1]")
      .def("to", &to_device, nb::arg("device"), "move the parameters: 'cpu', 'cuda', 'cuda:N' or 'auto'")
      .def("save", &save, nb::arg("path"), nb::arg("metadata") = std::map<std::string, std::string>{},
           "write .safetensors (zoo models) or .onnx (imported models), atomically");

  m.def("load", &load, nb::arg("path"), "load a model file: .safetensors written by aegis, or .onnx");
  m.def("load_onnx_bytes", &load_onnx_bytes, nb::arg("data"), nb::arg("name") = "<bytes>",
        "import an ONNX model held in memory (bytes of a ModelProto)");
  m.def("zoo", &zoo, nb::arg("name"), nb::arg("input_shape"), nb::arg("num_classes") = 10,
        nb::arg("activation") = "", nb::arg("seed") = 0, "a freshly initialized zoo architecture");
  m.def("model_names", &nn::model_names);
  m.def("load_data", &load_data, nb::arg("spec"), nb::arg("data_dir") = "",
        "(x_train, y_train, x_test, y_test) of a dataset spec ('digits', 'fashion-mnist', 'fashion-mnist:DIR', ...)");
  m.def("_data_pointer", &data_pointer, nb::arg("x"));
  m.def("_round_trip", &round_trip, nb::arg("x"));
  m.def("_forward_seconds", &forward_seconds, nb::arg("model"), nb::arg("x"), nb::arg("repeats"));
  m.def("cuda_compiled", [] { return cuda_compiled(); });
  m.def("cuda_device_count", &cuda_device_count);
  m.def("onnx_supported", &nn::onnx_supported);
  m.attr("__version__") = AEGIS_VERSION;
}

}  // namespace aegis::python

namespace nb = nanobind;

NB_MODULE(_aegis, m) {
  m.doc() = "aegis: private and robust deep learning (the compiled core; use the `aegis` package)";
  aegis::python::register_core(m);
  nb::module_ certify = m.def_submodule("certify", "randomized smoothing");
  aegis::python::register_certify(certify);
  nb::module_ attacks = m.def_submodule("attacks", "evasion attacks");
  aegis::python::register_attacks(attacks);
  nb::module_ privacy = m.def_submodule("privacy", "DP-SGD and its accounting");
  aegis::python::register_privacy(privacy);
  aegis::python::register_verify(m);
  aegis::python::register_report(m);
}
