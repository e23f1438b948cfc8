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

// Every element of a strided array, row-major over its shape, converted to Out.
template <class T, class Out>
void copy_elements(const Array& a, Out* dst, std::int64_t n) {
  const auto* src = static_cast<const T*>(a.data());
  for (std::int64_t flat = 0; flat < n; ++flat) {
    std::int64_t offset = 0, rest = flat;
    for (size_t k = a.ndim(); k-- > 0;) {
      const auto extent = static_cast<std::int64_t>(a.shape(k));
      offset += (rest % extent) * a.stride(k);
      rest /= extent;
    }
    dst[flat] = static_cast<Out>(src[offset]);
  }
}

// The same for any real or integer dtype, dispatched once on the dtype (TypeError otherwise).
template <class Out>
void copy_as(const Array& a, Out* dst, std::int64_t n) {
  const nb::dlpack::dtype d = a.dtype();
  if (d == nb::dtype<float>()) return copy_elements<float>(a, dst, n);
  if (d == nb::dtype<double>()) return copy_elements<double>(a, dst, n);
  if (d == nb::dtype<std::int8_t>()) return copy_elements<std::int8_t>(a, dst, n);
  if (d == nb::dtype<std::uint8_t>()) return copy_elements<std::uint8_t>(a, dst, n);
  if (d == nb::dtype<std::int16_t>()) return copy_elements<std::int16_t>(a, dst, n);
  if (d == nb::dtype<std::uint16_t>()) return copy_elements<std::uint16_t>(a, dst, n);
  if (d == nb::dtype<std::int32_t>()) return copy_elements<std::int32_t>(a, dst, n);
  if (d == nb::dtype<std::uint32_t>()) return copy_elements<std::uint32_t>(a, dst, n);
  if (d == nb::dtype<std::int64_t>()) return copy_elements<std::int64_t>(a, dst, n);
  if (d == nb::dtype<std::uint64_t>()) return copy_elements<std::uint64_t>(a, dst, n);
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
  copy_as(a, out.data<float>(), element_count(a));
  return out;
}

// The integers of a 1-D CPU array of `rows` entries (TypeError for another dtype, with `kind`
// naming what they are; ValueError naming a wrong shape or a CUDA array).
std::vector<std::int64_t> integers(const Array& a, std::int64_t rows, const char* what, const char* kind) {
  const auto code = static_cast<nb::dlpack::dtype_code>(a.dtype().code);
  if (code != nb::dlpack::dtype_code::Int && code != nb::dlpack::dtype_code::UInt)
    throw nb::type_error((std::string(what) + " has dtype " + dtype_text(a.dtype()) + "; " + kind).c_str());
  if (a.ndim() != 1 || static_cast<std::int64_t>(a.shape(0)) != rows)
    throw nb::value_error((std::string(what) + " has shape " + shape_text(a) + "; expected (" + std::to_string(rows) +
                           ",): one per example")
                              .c_str());
  if (array_device(a, what).is_cuda())
    throw nb::value_error((std::string(what) + " is a CUDA array; pass it on the CPU").c_str());
  std::vector<std::int64_t> out(static_cast<std::size_t>(rows));
  copy_as(a, out.data(), rows);
  return out;
}

std::vector<std::int64_t> index_vector(const Array& a, std::int64_t rows, const char* what) {
  std::vector<std::int64_t> out = integers(a, rows, what, "indices are integers");
  for (std::int64_t i = 0; i < rows; ++i)
    if (out[static_cast<std::size_t>(i)] < 0)
      throw nb::value_error((std::string(what) + "[" + std::to_string(i) + "] = " +
                             std::to_string(out[static_cast<std::size_t>(i)]) + " is negative")
                                .c_str());
  return out;
}

Tensor label_tensor(const Array& a, std::int64_t rows, std::int64_t num_classes, const char* what) {
  const std::vector<std::int64_t> v = integers(a, rows, what, "class labels are integers");
  Tensor out = Tensor::empty({rows}, DType::I32);
  std::int32_t* dst = out.data<std::int32_t>();
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int64_t c = v[static_cast<std::size_t>(i)];
    if (c < 0 || (num_classes > 0 && c >= num_classes))
      throw nb::value_error((std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(c) +
                             " is not a class in [0, " + std::to_string(num_classes) + ")")
                                .c_str());
    dst[i] = static_cast<std::int32_t>(c);
  }
  return out;
}

nn::Dataset array_dataset(const Model& model, const Array& x, const Array& y, const char* x_name,
                          const char* y_name) {
  nn::Dataset d;
  d.name = "arrays";
  d.images = model_input(model, x, x_name);
  d.labels = label_tensor(y, d.images.shape()[0], model.spec.num_classes, y_name);
  d.num_classes = model.spec.num_classes;
  return d;
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
