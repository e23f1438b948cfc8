#include "runtime/tensor.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "kernels/elementwise.h"
#include "core/cuda_backend.h"
#include "runtime/dispatch.h"

namespace aegis {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
  }
  return "?";
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

std::int64_t shape_numel(const Shape& s) {
  // Shapes also come from files and users: a negative size or a product beyond int64 (which
  // would wrap, undefined behaviour) is an error, checked before anything is allocated. A zero
  // makes the product 0, but the other sizes must still multiply within int64.
  std::int64_t n = 1;
  bool has_zero = false;
  for (auto d : s) {
    AEGIS_CHECK_AS(ShapeError, d >= 0, "shape " << shape_str(s) << " has a negative size");
    if (d == 0)
      has_zero = true;
    else
      AEGIS_CHECK_AS(ShapeError, !__builtin_mul_overflow(n, d, &n),
                     "shape " << shape_str(s) << " has more elements than 2^63 - 1");
  }
  return has_zero ? 0 : n;
}

// ---- Storage -------------------------------------------------------------------------------

std::shared_ptr<Storage> Storage::allocate(std::size_t bytes, Device device) {
  const std::size_t padded = ((bytes + 63) / 64) * 64;  // 64-byte aligned, never zero-sized
  if (device.is_cpu()) {
    void* p = std::aligned_alloc(64, padded == 0 ? 64 : padded);
    AEGIS_CHECK_AS(Error, p != nullptr, "out of host memory allocating " << bytes << " bytes");
    return std::shared_ptr<Storage>(new Storage(p, bytes, device, [](void* q) { std::free(q); }));
  }
  // A CPU-only build's backend throws DeviceError here (core/no_cuda/backend.cpp).
  void* p = cuda_backend::allocate(padded == 0 ? 64 : padded, device.index);
  const int index = device.index;
  return std::shared_ptr<Storage>(
      new Storage(p, bytes, device, [index](void* q) { cuda_backend::release(q, index); }));
}

std::shared_ptr<Storage> Storage::wrap(void* ptr, std::size_t bytes, Device device,
                                       std::function<void(void*)> release) {
  AEGIS_CHECK(ptr != nullptr || bytes == 0, "Storage::wrap given a null pointer for " << bytes << " bytes");
  return std::shared_ptr<Storage>(new Storage(ptr, bytes, device, std::move(release)));
}

Storage::~Storage() {
  if (m_release) m_release(m_ptr);
}

// ---- Tensor --------------------------------------------------------------------------------

namespace {
void check_shape_valid(const Shape& shape) {
  for (auto d : shape)
    AEGIS_CHECK_AS(ShapeError, d >= 0, "negative dimension in shape " << shape_str(shape));
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape_valid(shape);
  Tensor t;
  t.m_shape = shape;
  t.m_dtype = dtype;
  const auto numel = static_cast<std::size_t>(shape_numel(shape));
  AEGIS_CHECK_AS(ShapeError, numel <= SIZE_MAX / dtype_size(dtype),
                 "shape " << shape_str(shape) << " needs more bytes than an address space holds");
  t.m_storage = Storage::allocate(numel * dtype_size(dtype), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero();
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill(value);
  return t;
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  AEGIS_CHECK_AS(ShapeError, static_cast<std::int64_t>(values.size()) == shape_numel(shape),
                 values.size() << " values do not fill shape " << shape_str(shape));
  Tensor host = empty(shape, dtype_of<T>, Device::cpu());
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  return host.to(device);
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor Tensor::from_vector<std::int32_t>(const std::vector<std::int32_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<std::int64_t>(const std::vector<std::int64_t>&, const Shape&, Device);

Tensor Tensor::from_blob(void* ptr, const Shape& shape, DType dtype, Device device,
                         std::function<void(void*)> release) {
  check_shape_valid(shape);
  if (device.is_cuda() && !cuda_compiled()) throw_no_cuda("wrapping device memory");
  Tensor t;
  t.m_shape = shape;
  t.m_dtype = dtype;
  t.m_storage =
      Storage::wrap(ptr, static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype), device, std::move(release));
  return t;
}

std::int64_t Tensor::size(std::int64_t d) const {
  const std::int64_t n = dim();
  const std::int64_t k = d < 0 ? d + n : d;
  AEGIS_CHECK_AS(ShapeError, k >= 0 && k < n, "dimension " << d << " out of range for " << describe());
  return m_shape[static_cast<std::size_t>(k)];
}

void* Tensor::raw_data() const {
  AEGIS_CHECK_AS(ShapeError, defined(), "raw_data() on an undefined tensor");
  return static_cast<char*>(m_storage->data()) + m_offset;
}

Tensor Tensor::to(Device device) const {
  AEGIS_CHECK_AS(ShapeError, defined(), "to() on an undefined tensor");
  if (device == this->device()) return *this;
  Tensor out = empty(m_shape, m_dtype, device);
  out.copy_from(*this);
  return out;
}

Tensor Tensor::clone() const {
  AEGIS_CHECK_AS(ShapeError, defined(), "clone() on an undefined tensor");
  Tensor out = empty(m_shape, m_dtype, device());
  out.copy_from(*this);
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  std::int64_t known = 1;
  int infer = -1;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      AEGIS_CHECK_AS(ShapeError, infer < 0, "reshape to " << shape_str(shape) << ": more than one -1");
      infer = static_cast<int>(i);
    } else {
      AEGIS_CHECK_AS(ShapeError, s[i] >= 0, "reshape to " << shape_str(shape) << ": negative size");
      known *= s[i];
    }
  }
  if (infer >= 0) {
    AEGIS_CHECK_AS(ShapeError, known > 0 && numel() % known == 0,
                   "cannot reshape " << describe() << " to " << shape_str(shape));
    s[static_cast<std::size_t>(infer)] = numel() / known;
  }
  AEGIS_CHECK_AS(ShapeError, shape_numel(s) == numel(), "cannot reshape " << describe() << " to " << shape_str(shape));
  Tensor t = *this;
  t.m_shape = s;
  return t;
}

Tensor Tensor::rows(std::int64_t begin, std::int64_t end) const {
  AEGIS_CHECK_AS(ShapeError, dim() >= 1, "rows() on a 0-d tensor");
  AEGIS_CHECK_AS(ShapeError, 0 <= begin && begin <= end && end <= m_shape[0],
                 "rows [" << begin << ", " << end << ") out of range for " << describe());
  Tensor t = *this;
  const std::int64_t row = m_shape[0] == 0 ? 0 : numel() / m_shape[0];
  t.m_offset += static_cast<std::size_t>(begin * row) * dtype_size(m_dtype);
  t.m_shape[0] = end - begin;
  return t;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(Device::cpu());
  const T* p = host.data<T>();
  return std::vector<T>(p, p + numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<std::int32_t> Tensor::to_vector<std::int32_t>() const;
template std::vector<std::int64_t> Tensor::to_vector<std::int64_t>() const;

double Tensor::item() const {
  AEGIS_CHECK_AS(ShapeError, numel() == 1, "item() needs one element, got " << describe());
  switch (m_dtype) {
    case DType::F32: return to_vector<float>()[0];
    case DType::F64: return to_vector<double>()[0];
    case DType::I32: return to_vector<std::int32_t>()[0];
    case DType::I64: return static_cast<double>(to_vector<std::int64_t>()[0]);
  }
  return 0.0;
}

void Tensor::copy_from(const Tensor& src) {
  AEGIS_CHECK_AS(ShapeError, defined() && src.defined(), "copy_from with an undefined tensor");
  AEGIS_CHECK_AS(ShapeError, src.m_shape == m_shape && src.m_dtype == m_dtype,
                 "copy_from " << src.describe() << " into " << describe());
  const std::size_t n = nbytes();
  if (n == 0) return;
  if (device().is_cpu() && src.device().is_cpu()) {
    std::memcpy(raw_data(), src.raw_data(), n);
    return;
  }
  using cuda_backend::Copy;
  const Copy kind = device().is_cpu()       ? Copy::DeviceToHost
                    : src.device().is_cpu() ? Copy::HostToDevice
                                            : Copy::DeviceToDevice;
  cuda_backend::copy(raw_data(), src.raw_data(), n, kind);
}

void Tensor::fill(double value) {
  AEGIS_CHECK_AS(ShapeError, defined(), "fill() on an undefined tensor");
  const std::int64_t n = numel();
  if (n == 0) return;
  if (device().is_cuda()) {
    if (value == 0.0) {
      cuda_backend::memset_zero(raw_data(), nbytes());
      return;
    }
    AEGIS_CHECK_AS(ShapeError, m_dtype == DType::F32, "fill on the GPU supports f32, got " << describe());
    AEGIS_DISPATCH(device(), fill(data<float>(), static_cast<float>(value), n));
    return;
  }
  switch (m_dtype) {
    case DType::F32: kernels::cpu::fill(data<float>(), static_cast<float>(value), n); break;
    case DType::F64: {
      double* p = data<double>();
      for (std::int64_t i = 0; i < n; ++i) p[i] = value;
      break;
    }
    case DType::I32: {
      std::int32_t* p = data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<std::int32_t>(value);
      break;
    }
    case DType::I64: {
      std::int64_t* p = data<std::int64_t>();
      for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<std::int64_t>(value);
      break;
    }
  }
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return std::string(dtype_name(m_dtype)) + shape_str(m_shape) + " on " + device().str();
}

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
  AEGIS_CHECK_AS(ShapeError, t.defined() && t.shape() == expected,
                 what << ": expected shape " << shape_str(expected) << ", got " << t.describe());
}
void check_dtype(const Tensor& t, DType expected, const char* what) {
  AEGIS_CHECK_AS(ShapeError, t.defined() && t.dtype() == expected,
                 what << ": expected dtype " << dtype_name(expected) << ", got " << t.describe());
}
void check_same_device(const Tensor& a, const Tensor& b, const char* what) {
  AEGIS_CHECK_AS(ShapeError, a.device() == b.device(),
                 what << ": tensors on different devices (" << a.describe() << " vs " << b.describe() << ")");
}
void check_dim(const Tensor& t, std::int64_t dim, const char* what) {
  AEGIS_CHECK_AS(ShapeError, t.defined() && t.dim() == dim,
                 what << ": expected a " << dim << "-d tensor, got " << t.describe());
}

}  // namespace aegis
