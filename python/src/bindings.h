// Shared pieces of the aegis Python module (nanobind): the model handle, arrays in and out
// through DLPack, progress reports into Python, and one registration function per submodule.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/progress.h"
#include "nn/data/dataset.h"
#include "nn/zoo.h"
#include "runtime/tensor.h"

namespace aegis::python {

namespace nb = nanobind;

// A classifier and what its file said about it. `path` is the file it was loaded from or last
// saved to ("" for a model made in memory): a sweep records it and its fingerprint. Calls lock
// `mutex` while they use the model (they run without the GIL, and a module's forward pass keeps
// per-call state such as captured activations). The lock is only ever taken after releasing the
// GIL, so that a thread waiting for it never holds the GIL the holder may need.
struct Model {
  std::shared_ptr<nn::Module> module;
  nn::ModelSpec spec;
  std::map<std::string, std::string> metadata;
  std::string path;
  Device device = Device::cpu();
  std::mutex mutex;
};

// ---- arrays ----------------------------------------------------------------------------------
// Any DLPack-capable array (NumPy, PyTorch, ...). A C-contiguous float32 array is wrapped without
// a copy: the Tensor's data pointer is the array's, and the Tensor holds a reference to the array
// for as long as it (or a view of it) lives. Other float dtypes
// and non-contiguous layouts are copied into float32 (a copy the caller could avoid). Integer,
// complex or bool arrays are a TypeError naming the dtype.
using Array = nb::ndarray<nb::ro>;
Tensor float_tensor(const Array& a, const char* what);
// Class labels: any integer dtype, 1-D, values in [0, num_classes) when num_classes > 0
// (ValueError naming the first bad value); a CPU int32 tensor (copied).
Tensor label_tensor(const Array& a, std::int64_t rows, std::int64_t num_classes, const char* what);
// Non-negative integer indices, 1-D with `rows` entries (ValueError naming the first negative one).
std::vector<std::int64_t> index_vector(const Array& a, std::int64_t rows, const char* what);
// Images and labels for `model` as a Dataset (the images wrapped without a copy where possible).
nn::Dataset array_dataset(const Model& model, const Array& x, const Array& y, const char* x_name = "x",
                          const char* y_name = "y");
// Images for `model`: [N, C, H, W] matching its input shape (ValueError naming both shapes).
Tensor model_input(const Model& model, const Array& a, const char* what = "x");
// A Tensor as an array object with __dlpack__ and the buffer protocol; it keeps the Tensor's
// storage alive, so no copy is made (the Python layer turns it into the caller's array type).
nb::object to_array(const Tensor& t);
// A contiguous host vector as an array (copied once).
template <class T>
nb::object vector_array(const std::vector<T>& v);

// ---- progress --------------------------------------------------------------------------------
// Forwards the library's reports to a Python object with begin/update/end/info/warning methods
// (or ignores them when it is None), taking the GIL for each. Every report also checks for a
// pending signal: Ctrl-C raises KeyboardInterrupt out of the running call (files it wrote stay
// complete and resumable).
class PyProgress : public ProgressSink {
 public:
  explicit PyProgress(nb::object sink) : m_sink(std::move(sink)) {}
  void begin(const std::string& label, std::int64_t total, const std::string& unit) override;
  void update(std::int64_t done, const std::string& extra) override;
  void end(const std::string& extra) override;
  void info(const std::string& message) override;
  void warning(const std::string& message) override;
  // Checks for Ctrl-C only (for loops with no report of their own).
  void poll();

 private:
  template <class... A>
  void call(const char* method, const A&... args) {
    nb::gil_scoped_acquire gil;
    if (!m_sink.is_none()) m_sink.attr(method)(args...);
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
  }
  nb::object m_sink;
};

// JSON text of the library's report structs, as Python objects (dict, list, ...).
nb::object json_object(const std::string& text);

void register_core(nb::module_& m);
void register_certify(nb::module_& m);
void register_attacks(nb::module_& m);
void register_privacy(nb::module_& m);
void register_verify(nb::module_& m);
void register_report(nb::module_& m);

}  // namespace aegis::python
