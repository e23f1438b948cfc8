// Tensor: dtype + shape + device + shared storage. Always contiguous and row-major (NCHW for
// images); views (reshape, row slices) share the storage. A Tensor can also wrap memory it does
// not own (a pointer handed over by another framework) without copying it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace aegis {

using Shape = std::vector<std::int64_t>;
std::string shape_str(const Shape& s);
std::int64_t shape_numel(const Shape& s);

// A block of memory on one device. Owned blocks are freed with the allocator that made them;
// wrapped blocks call the release function given by their owner (or nothing).
class Storage {
 public:
  static std::shared_ptr<Storage> allocate(std::size_t bytes, Device device);
  static std::shared_ptr<Storage> wrap(void* ptr, std::size_t bytes, Device device,
                                       std::function<void(void*)> release);
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();

  void* data() const { return m_ptr; }
  std::size_t bytes() const { return m_bytes; }
  Device device() const { return m_device; }

 private:
  Storage(void* ptr, std::size_t bytes, Device device, std::function<void(void*)> release)
      : m_ptr(ptr), m_bytes(bytes), m_device(device), m_release(std::move(release)) {}
  void* m_ptr;
  std::size_t m_bytes;
  Device m_device;
  std::function<void(void*)> m_release;
};

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());
  // Wraps memory owned elsewhere. `release` (may be empty) runs when the last Tensor
  // referring to it is destroyed.
  static Tensor from_blob(void* ptr, const Shape& shape, DType dtype, Device device,
                          std::function<void(void*)> release = {});
  static Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
  static Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }

  bool defined() const { return m_storage != nullptr; }
  const Shape& shape() const { return m_shape; }
  std::int64_t dim() const { return static_cast<std::int64_t>(m_shape.size()); }
  std::int64_t size(std::int64_t d) const;  // negative d counts from the end
  std::int64_t numel() const { return shape_numel(m_shape); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(m_dtype); }
  DType dtype() const { return m_dtype; }
  Device device() const { return m_storage ? m_storage->device() : Device::cpu(); }
  bool is_cuda() const { return device().is_cuda(); }

  void* raw_data() const;
  template <class T>
  T* data() const;

  // Copies (or returns *this when already there).
  Tensor to(Device device) const;
  Tensor clone() const;
  // Views sharing storage. reshape accepts one -1.
  Tensor reshape(const Shape& shape) const;
  Tensor rows(std::int64_t begin, std::int64_t end) const;  // [begin, end) along dim 0

  template <class T>
  std::vector<T> to_vector() const;
  double item() const;  // the single element of a one-element tensor, as double

  void copy_from(const Tensor& src);  // same shape and dtype, any devices
  void fill(double value);
  void zero() { fill(0.0); }

  std::string describe() const;  // "f32[256, 1, 28, 28] on cpu"

 private:
  std::shared_ptr<Storage> m_storage;
  std::size_t m_offset = 0;  // bytes
  Shape m_shape;
  DType m_dtype = DType::F32;
};

template <class T>
T* Tensor::data() const {
  AEGIS_CHECK_AS(ShapeError, defined(), "data() on an undefined tensor");
  AEGIS_CHECK_AS(ShapeError, m_dtype == dtype_of<T>,
                 "tensor " << describe() << " accessed as " << dtype_name(dtype_of<T>));
  return static_cast<T*>(raw_data());
}

// Shape/dtype/device checks shared by ops. Each throws ShapeError naming `what`.
void check_shape(const Tensor& t, const Shape& expected, const char* what);
void check_dtype(const Tensor& t, DType expected, const char* what);
void check_same_device(const Tensor& a, const Tensor& b, const char* what);
void check_dim(const Tensor& t, std::int64_t dim, const char* what);

}  // namespace aegis
