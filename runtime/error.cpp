#include "runtime/error.h"

#include <cstring>

namespace aegis::detail {

std::string with_location(const std::string& message, const char* file, int line) {
  // Report the path relative to the source tree: "runtime/tensor.cpp:42", not an absolute path.
  const char* shown = file;
  for (const char* root : {"/runtime/", "/kernels/", "/nn/", "/privacy/", "/attacks/", "/certify/", "/apps/"}) {
    if (const char* hit = std::strstr(file, root)) {
      shown = hit + 1;
      break;
    }
  }
  return message + " [" + shown + ":" + std::to_string(line) + "]";
}

}  // namespace aegis::detail
