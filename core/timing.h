// Wall-clock seconds for the time fields of results (train_seconds, seconds, ...).
#pragma once

#include <chrono>

namespace aegis {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace aegis
