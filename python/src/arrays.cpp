// Arrays in and out of the Python module through DLPack (nanobind's ndarray).
#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#include "bindings.h"
#include "core/error.h"

namespace aegis::python {

namespace {

std::string dtype_text(const nb::dlpack::dtype& d) {
  const char* kind = "unknown";
  switch (static_cast<nb::dlpack::dtype_code>(d.code)) {
    case nb::dlpack::dtype_code::Int: kind = "int"; break;
    case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
    case nb::dlpack::dtype_code::Float: kind = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
    case nb::dlpack::dtype_code::Bool: kind = "bool"; return "bool";
  }
  return std::string(kind) + std::to_string(d.bits);
}

std::string shape_text(const Array& a) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

Device array_device(const Array& a, const char* what) {
  const int type = a.device_type();
  if (type == nb::device::cpu::value) return Device::cpu();
  if (type == nb::device::cuda::value) {
    AEGIS_CHECK_AS(DeviceError, cuda_compiled(),
                   what << " is a CUDA array, but this aegis was built without the CUDA backend");
    return Device::cuda(a.device_id());
  }
  throw nb::value_error((std::string(what) + " lives on DLPack device type " + std::to_string(type) +
                         "; aegis reads CPU and CUDA arrays")
                            .c_str());
}

bool c_contiguous(const Array& a) {
  std::int64_t expected = 1;
  for (size_t k = a.ndim(); k-- > 0;) {
    if (a.shape(k) != 1 && a.stride(k) != expected) return false;
    expected *= static_cast<std::int64_t>(a.shape(k));
  }
  return true;
}

// Element `flat` (row-major over the shape) of a strided array, as double.
template <class T>
double element(const Array& a, std::int64_t flat) {
  std::int64_t offset = 0;
  for (size_t k = a.ndim(); k-- > 0;) {
    const auto extent = static_cast<std::int64_t>(a.shape(k));
    offset += (flat % extent) * a.stride(k);
    flat /= extent;
  }
  return static_cast<double>(static_cast<const T*>(a.data())[offset]);
}

double element_as_double(const Array& a, std::int64_t flat) {
  const nb::dlpack::dtype d = a.dtype();
  if (d == nb::dtype<float>()) return element<float>(a, flat);
  if (d == nb::dtype<double>()) return element<double>(a, flat);
  if (d == nb::dtype<std::int8_t>()) return element<std::int8_t>(a, flat);
  if (d == nb::dtype<std::uint8_t>()) return element<std::uint8_t>(a, flat);
  if (d == nb::dtype<std::int16_t>()) return element<std::int16_t>(a, flat);
  if (d == nb::dtype<std::uint16_t>()) return element<std::uint16_t>(a, flat);
  if (d == nb::dtype<std::int32_t>()) return element<std::int32_t>(a, flat);
  if (d == nb::dtype<std::uint32_t>()) return element<std::uint32_t>(a, flat);
  if (d == nb::dtype<std::int64_t>()) return element<std::int64_t>(a, flat);
  if (d == nb::dtype<std::uint64_t>()) return element<std::uint64_t>(a, flat);
  throw nb::type_error(("unsupported dtype " + dtype_text(d)).c_str());
}

Shape array_shape(const Array& a) {
  Shape s;
  for (size_t k = 0; k < a.ndim(); ++k) s.push_back(static_cast<std::int64_t>(a.shape(k)));
  return s;
}

std::int64_t element_count(const Array& a) {
  std::int64_t n = 1;
  for (size_t k = 0; k < a.ndim(); ++k) n *= static_cast<std::int64_t>(a.shape(k));
  return n;
}

}  // namespace

Tensor float_tensor(const Array& a, const char* what) {
  const nb::dlpack::dtype d = a.dtype();
  const bool is_float = d.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float) && d.lanes == 1 &&
                        (d.bits == 32 || d.bits == 64);
  if (!is_float)
    throw nb::type_error((std::string(what) + " has dtype " + dtype_text(d) + "; aegis reads float32 (or float64, "
                                                                               "copied) images")
                             .c_str());
  const Device device = array_device(a, what);
  const Shape shape = array_shape(a);
  if (d.bits == 32 && c_contiguous(a)) {
    // The Tensor keeps the caller's array alive (a result can be a view of its input, a reshape
    // for instance); the last reference may drop on any thread, so it takes the GIL to let go.
    auto* keep = new Array(a);
    return Tensor::from_blob(const_cast<void*>(a.data()), shape, DType::F32, device, [keep](void*) {
      nb::gil_scoped_acquire gil;
      delete keep;
    });
  }
  if (device.is_cuda())
    throw nb::value_error((std::string(what) + " is a CUDA array that is not C-contiguous float32 (dtype " +
                           dtype_text(d) + "); pass x.contiguous().float()")
                              .c_str());
  Tensor out = Tensor::empty(shape, DType::F32);
  float* dst = out.data<float>();
  const std::int64_t n = element_count(a);
  for (std::int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(element_as_double(a, i));
  return out;
}

Tensor label_tensor(const Array& a, std::int64_t rows, std::int64_t num_classes, const char* what) {
  const nb::dlpack::dtype d = a.dtype();
  const auto code = static_cast<nb::dlpack::dtype_code>(d.code);
  if (code != nb::dlpack::dtype_code::Int && code != nb::dlpack::dtype_code::UInt)
    throw nb::type_error((std::string(what) + " has dtype " + dtype_text(d) + "; class labels are integers").c_str());
  if (a.ndim() != 1 || static_cast<std::int64_t>(a.shape(0)) != rows)
    throw nb::value_error((std::string(what) + " has shape " + shape_text(a) + "; expected (" + std::to_string(rows) +
                           ",): one label per example")
                              .c_str());
  if (array_device(a, what).is_cuda())
    throw nb::value_error((std::string(what) + " is a CUDA array; pass the labels on the CPU (x.cpu())").c_str());
  Tensor out = Tensor::empty({rows}, DType::I32);
  std::int32_t* dst = out.data<std::int32_t>();
  for (std::int64_t i = 0; i < rows; ++i) {
    const double v = element_as_double(a, i);
    if (v < 0 || (num_classes > 0 && v >= static_cast<double>(num_classes)))
      throw nb::value_error((std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(static_cast<long long>(v)) +
                             " is not a class in [0, " + std::to_string(num_classes) + ")")
                                .c_str());
    dst[i] = static_cast<std::int32_t>(v);
  }
  return out;
}

std::vector<std::int64_t> index_vector(const Array& a, std::int64_t rows, const char* what) {
  const auto code = static_cast<nb::dlpack::dtype_code>(a.dtype().code);
  if (code != nb::dlpack::dtype_code::Int && code != nb::dlpack::dtype_code::UInt)
    throw nb::type_error((std::string(what) + " has dtype " + dtype_text(a.dtype()) + "; indices are integers").c_str());
  if (a.ndim() != 1 || static_cast<std::int64_t>(a.shape(0)) != rows)
    throw nb::value_error((std::string(what) + " has shape " + shape_text(a) + "; expected (" + std::to_string(rows) +
                           ",): one per example")
                              .c_str());
  if (array_device(a, what).is_cuda())
    throw nb::value_error((std::string(what) + " is a CUDA array; pass it on the CPU").c_str());
  std::vector<std::int64_t> out(static_cast<std::size_t>(rows));
  for (std::int64_t i = 0; i < rows; ++i) {
    const double v = element_as_double(a, i);
    if (v < 0)
      throw nb::value_error((std::string(what) + "[" + std::to_string(i) + "] = " +
                             std::to_string(static_cast<long long>(v)) + " is negative")
                                .c_str());
    out[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(v);
  }
  return out;
}

Tensor model_input(const Model& model, const Array& a, const char* what) {
  const Shape& in = model.spec.input_shape;
  bool ok = a.ndim() == in.size() + 1;
  for (size_t k = 0; ok && k < in.size(); ++k) ok = static_cast<std::int64_t>(a.shape(k + 1)) == in[k];
  if (!ok)
    throw nb::value_error((std::string(what) + " has shape " + shape_text(a) + "; the model takes (N, " +
                           [&] {
                             std::string s;
                             for (size_t k = 0; k < in.size(); ++k) s += (k ? ", " : "") + std::to_string(in[k]);
                             return s;
                           }() +
                           ")")
                              .c_str());
  return float_tensor(a, what);
}

nb::object to_array(const Tensor& t) {
  auto* keep = new Tensor(t);
  nb::capsule owner(keep, [](void* p) noexcept { delete static_cast<Tensor*>(p); });
  std::vector<size_t> shape;
  for (std::int64_t e : t.shape()) shape.push_back(static_cast<size_t>(e));
  nb::dlpack::dtype dtype = nb::dtype<float>();
  switch (t.dtype()) {
    case DType::F32: dtype = nb::dtype<float>(); break;
    case DType::F64: dtype = nb::dtype<double>(); break;
    case DType::I32: dtype = nb::dtype<std::int32_t>(); break;
    case DType::I64: dtype = nb::dtype<std::int64_t>(); break;
  }
  const bool cuda = t.device().is_cuda();
  nb::ndarray<nb::array_api> array(keep->raw_data(), shape.size(), shape.data(), owner, nullptr, dtype,
                      cuda ? nb::device::cuda::value : nb::device::cpu::value, cuda ? t.device().index : 0);
  return nb::cast(array);
}

template <class T>
nb::object vector_array(const std::vector<T>& v) {
  Tensor t;
  if constexpr (std::is_same_v<T, std::int64_t>)
    t = Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())});
  else if constexpr (std::is_same_v<T, std::int32_t>)
    t = Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())});
  else
    t = Tensor::from_vector(std::vector<double>(v.begin(), v.end()), {static_cast<std::int64_t>(v.size())});
  return to_array(t);
}
template nb::object vector_array(const std::vector<std::int64_t>&);
template nb::object vector_array(const std::vector<std::int32_t>&);
template nb::object vector_array(const std::vector<double>&);
template nb::object vector_array(const std::vector<float>&);

}  // namespace aegis::python
