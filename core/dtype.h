// Element types. float32 is the working type everywhere; float64 exists on the CPU for
// references and accounting; int32 holds labels; int64 holds counts (device-side counters).
#pragma once

#include <cstddef>
#include <cstdint>

namespace aegis {

enum class DType : std::uint8_t { F32, F64, I32, I64 };

constexpr std::size_t dtype_size(DType t) {
  return t == DType::F64 || t == DType::I64 ? 8 : 4;
}
const char* dtype_name(DType t);

template <class T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::F64;
};
template <>
struct DTypeOf<std::int32_t> {
  static constexpr DType value = DType::I32;
};
template <>
struct DTypeOf<std::int64_t> {
  static constexpr DType value = DType::I64;
};
template <class T>
constexpr DType dtype_of = DTypeOf<T>::value;

}  // namespace aegis
