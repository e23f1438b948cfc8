// Errors thrown by aegis. Library code never prints-and-exits: it throws one of these with a
// message that names the argument and its bad value, and the file:line that threw.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace aegis {

// what() is the message followed by " [file:line]" when the error carries a location (every
// AEGIS_THROW does); message() and location() give the two parts, so that a front end can show a
// user the message alone and keep the location for --verbose or a bug report.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message), m_message(message) {}
  Error(const std::string& message, const char* file, int line);
  const std::string& message() const noexcept { return m_message; }
  const std::string& location() const noexcept { return m_location; }

 private:
  std::string m_message;
  std::string m_location;  // "runtime/tensor.cpp:42", or empty
};
// A caller passed a value outside its documented range (σ ≤ 0, a negative batch size, ...).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};
// Tensor shapes, dtypes or devices that do not fit together.
class ShapeError : public Error {
 public:
  using Error::Error;
};
// A file could not be read or written, or its contents are malformed.
class IoError : public Error {
 public:
  using Error::Error;
};
// A device was requested that this build or this machine does not have, or a CUDA call failed.
class DeviceError : public Error {
 public:
  using Error::Error;
};
// A well-formed input that uses what aegis does not implement: an ONNX operator or attribute
// value outside the supported set, a shape only known at run time.
class Unsupported : public Error {
 public:
  using Error::Error;
};
// NaN or Inf where finite numbers are required.
class NumericError : public Error {
 public:
  using Error::Error;
};

namespace detail {
std::string source_location(const char* file, int line);  // "runtime/tensor.cpp:42"
}  // namespace detail

}  // namespace aegis

#define AEGIS_THROW(ErrorType, stream_expr)                                         \
  do {                                                                              \
    std::ostringstream aegis_msg_;                                                  \
    aegis_msg_ << stream_expr;                                                      \
    throw ErrorType(aegis_msg_.str(), __FILE__, __LINE__);                           \
  } while (0)

// AEGIS_CHECK(cond, "batch size " << b << " must be positive") throws InvalidArgument.
#define AEGIS_CHECK(cond, stream_expr)                        \
  do {                                                        \
    if (!(cond)) AEGIS_THROW(::aegis::InvalidArgument, stream_expr); \
  } while (0)

// Same, with the error type spelled out: AEGIS_CHECK_AS(ShapeError, a == b, "...").
#define AEGIS_CHECK_AS(ErrorType, cond, stream_expr) \
  do {                                               \
    if (!(cond)) AEGIS_THROW(ErrorType, stream_expr); \
  } while (0)
