#include "core/error.h"

#include <cstring>

namespace aegis {

namespace detail {
std::string source_location(const char* file, int line) {
  // The path relative to the source tree: "runtime/tensor.cpp:42", not an absolute path.
  const char* shown = file;
  for (const char* root : {"/core/", "/runtime/", "/kernels/", "/nn/", "/privacy/", "/attacks/", "/certify/", "/apps/"}) {
    if (const char* hit = std::strstr(file, root)) {
      shown = hit + 1;
      break;
    }
  }
  return std::string(shown) + ":" + std::to_string(line);
}
}  // namespace detail

Error::Error(const std::string& message, const char* file, int line)
    : std::runtime_error(message + " [" + detail::source_location(file, line) + "]"),
      m_message(message),
      m_location(detail::source_location(file, line)) {}

}  // namespace aegis
