// Whole-file reads for the dataset loaders: raw files, or gzip streams recognized by their magic
// bytes (RFC 1952 §2.3.1: ID1 = 0x1f, ID2 = 0x8b) and inflated with zlib.
#include <sys/stat.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "nn/data/dataset.h"

namespace aegis::nn::detail {
namespace {

struct FileCloser {
  std::FILE* f;
  ~FileCloser() {
    if (f) std::fclose(f);
  }
};

std::vector<unsigned char> read_raw(std::FILE* f, const std::string& path) {
  std::vector<unsigned char> bytes;
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  for (;;) {
    const std::size_t old = bytes.size();
    bytes.resize(old + kChunk);
    const std::size_t got = std::fread(bytes.data() + old, 1, kChunk, f);
    bytes.resize(old + got);
    if (got < kChunk) break;
  }
  if (std::ferror(f)) AEGIS_THROW(IoError, path << ": read error: " << std::strerror(errno));
  return bytes;
}

std::vector<unsigned char> read_gzip(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");
  if (!gz) AEGIS_THROW(IoError, path << ": cannot open gzip stream: " << std::strerror(errno));
  gzbuffer(gz, 1u << 18);
  std::vector<unsigned char> bytes;
  constexpr unsigned kChunk = 1u << 22;
  std::string error;
  for (;;) {
    const std::size_t old = bytes.size();
    bytes.resize(old + kChunk);
    const int got = gzread(gz, bytes.data() + old, kChunk);
    if (got < 0) {
      int code = Z_OK;
      error = gzerror(gz, &code);
      bytes.resize(old);
      break;
    }
    bytes.resize(old + static_cast<std::size_t>(got));
    if (got == 0) break;
  }
  // gzclose_r reports Z_BUF_ERROR when the input ended in the middle of a gzip member (a file cut
  // short in a download), which gzread itself lets pass as end of file.
  const int close_code = gzclose_r(gz);
  if (!error.empty()) AEGIS_THROW(IoError, path << ": corrupt gzip stream: " << error);
  if (close_code == Z_BUF_ERROR)
    AEGIS_THROW(IoError, path << ": truncated gzip stream (the file ends inside compressed data)");
  if (close_code != Z_OK) AEGIS_THROW(IoError, path << ": gzip stream error (zlib code " << close_code << ")");
  return bytes;
}

}  // namespace

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool directory_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<unsigned char> read_file_bytes(const std::string& path) {
  if (directory_exists(path)) AEGIS_THROW(IoError, path << ": is a directory, expected a file");
  FileCloser file{std::fopen(path.c_str(), "rb")};
  if (!file.f) AEGIS_THROW(IoError, path << ": cannot open: " << std::strerror(errno));
  unsigned char magic[2] = {0, 0};
  const std::size_t got = std::fread(magic, 1, 2, file.f);
  if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) return read_gzip(path);
  std::rewind(file.f);
  return read_raw(file.f, path);
}

}  // namespace aegis::nn::detail
