// What the file-reading harnesses share: a scratch directory of their own for the files the
// readers take by path, writing the fuzz input there, and cutting one input into two files.
// A harness process makes one scratch directory (under $TMPDIR, else /tmp), rewrites its files
// for every input, and removes the directory when it exits normally.
#pragma once

#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

namespace aegis::fuzz {

class ScratchDir {
 public:
  ScratchDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/aegis-fuzz-XXXXXX";
    if (!::mkdtemp(pattern.data())) {
      std::perror("aegis fuzz harness: mkdtemp");
      std::abort();  // the harness cannot run at all; not a finding about the library
    }
    m_path = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(m_path, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return m_path; }
  std::string file(const std::string& name) const { return m_path + "/" + name; }

 private:
  std::string m_path;
};

// The process's scratch directory (made on first use).
inline const ScratchDir& scratch() {
  static const ScratchDir dir;
  return dir;
}

// Replaces the file by a new one rather than truncating it: ext4 starts writing a truncated and
// rewritten file back to disk when it is closed (its auto_da_alloc heuristic), which made the
// harnesses wait on the disk for most of their time (under 200 inputs/s).
inline void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::remove(path.c_str());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror("aegis fuzz harness: writing the input file");
    std::abort();
  }
}

// One input as two byte strings: a 2-byte little-endian length L, the first L bytes (fewer when
// the input is shorter), then the rest.
struct TwoParts {
  const std::uint8_t* first = nullptr;
  std::size_t first_size = 0;
  const std::uint8_t* second = nullptr;
  std::size_t second_size = 0;
};

inline TwoParts split_two(const std::uint8_t* data, std::size_t size) {
  TwoParts parts;
  const std::size_t header = size < 2 ? size : 2;
  std::size_t length = header == 2 ? (std::size_t{data[0]} | (std::size_t{data[1]} << 8)) : 0;
  data += header;
  size -= header;
  if (length > size) length = size;
  parts.first = data;
  parts.first_size = length;
  parts.second = data + length;
  parts.second_size = size - length;
  return parts;
}

// A property of an accepted input does not hold: report it the way a sanitizer would, as a crash
// that libFuzzer records with the input.
[[noreturn]] inline void property_violated(const char* what) {
  std::fprintf(stderr, "aegis fuzz harness: property violated: %s\n", what);
  std::abort();
}

}  // namespace aegis::fuzz
