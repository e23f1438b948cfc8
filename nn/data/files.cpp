// Whole-file reads for the dataset loaders: raw files, or gzip streams recognized by their magic
// bytes (RFC 1952 §2.3.1: ID1 = 0x1f, ID2 = 0x8b) and inflated with zlib.
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
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

// Reads at most `limit` bytes of content; `more` tells whether the content goes on past them.
// Reading in chunks keeps a file that lies about its length (or a gzip bomb, whose content is
// vastly larger than the file) from being read further than the caller allows. Chunks start at
// 64 KiB and double up to `max_chunk`, so a small file does not cost a zeroed buffer of the largest
// chunk (a 3 KB CIFAR-10 batch made the loader zero 4 MiB per gzip file and 1 MiB per raw one).
constexpr std::uint64_t kFirstChunk = std::uint64_t{1} << 16;

std::uint64_t next_chunk(std::uint64_t chunk, std::uint64_t max_chunk) {
  return std::min(chunk * 2, max_chunk);
}

std::vector<unsigned char> read_raw(std::FILE* f, const std::string& path, std::uint64_t limit, bool& more) {
  std::vector<unsigned char> bytes;
  constexpr std::uint64_t kMaxChunk = std::uint64_t{1} << 20;
  more = false;
  for (std::uint64_t chunk = kFirstChunk;; chunk = next_chunk(chunk, kMaxChunk)) {
    const std::size_t old = bytes.size();
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, limit - old));
    if (want == 0) {
      more = std::fgetc(f) != EOF;
      break;
    }
    bytes.resize(old + want);
    const std::size_t got = std::fread(bytes.data() + old, 1, want, f);
    bytes.resize(old + got);
    if (got < want) break;
  }
  if (std::ferror(f)) AEGIS_THROW(IoError, path << ": read error: " << std::strerror(errno));
  return bytes;
}

// The same for a gzip stream; `whole` is false when the caller wants a prefix only, and then a
// stream left unfinished is no error.
std::vector<unsigned char> read_gzip(const std::string& path, std::uint64_t limit, bool whole, bool& more) {
  gzFile gz = gzopen(path.c_str(), "rb");
  if (!gz) AEGIS_THROW(IoError, path << ": cannot open gzip stream: " << std::strerror(errno));
  gzbuffer(gz, 1u << 18);
  std::vector<unsigned char> bytes;
  constexpr std::uint64_t kMaxChunk = std::uint64_t{1} << 22;
  std::string error;
  more = false;
  for (std::uint64_t chunk = kFirstChunk;; chunk = next_chunk(chunk, kMaxChunk)) {
    const std::size_t old = bytes.size();
    const auto want = static_cast<unsigned>(std::min<std::uint64_t>(chunk, limit - old));
    if (want == 0) {
      unsigned char probe = 0;
      more = gzread(gz, &probe, 1) == 1;
      break;
    }
    bytes.resize(old + want);
    const int got = gzread(gz, bytes.data() + old, want);
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
  if (!whole || more) return bytes;
  if (close_code == Z_BUF_ERROR)
    AEGIS_THROW(IoError, path << ": truncated gzip stream (the file ends inside compressed data)");
  if (close_code != Z_OK) AEGIS_THROW(IoError, path << ": gzip stream error (zlib code " << close_code << ")");
  return bytes;
}

std::vector<unsigned char> read_content(const std::string& path, std::uint64_t limit, bool whole, bool& more) {
  if (directory_exists(path)) AEGIS_THROW(IoError, path << ": is a directory, expected a file");
  if (!file_exists(path) && ::access(path.c_str(), F_OK) == 0) AEGIS_THROW(IoError, path << ": not a regular file");
  FileCloser file{std::fopen(path.c_str(), "rb")};
  if (!file.f) AEGIS_THROW(IoError, path << ": cannot open: " << std::strerror(errno));
  unsigned char magic[2] = {0, 0};
  const std::size_t got = std::fread(magic, 1, 2, file.f);
  if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) return read_gzip(path, limit, whole, more);
  std::rewind(file.f);
  return read_raw(file.f, path, limit, more);
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

std::vector<unsigned char> read_file_bytes(const std::string& path, std::uint64_t limit) {
  bool more = false;
  std::vector<unsigned char> bytes = read_content(path, limit, true, more);
  if (more) AEGIS_THROW(IoError, path << ": holds more than the " << limit << " bytes expected (after decompression)");
  return bytes;
}

std::vector<unsigned char> read_file_head(const std::string& path, std::size_t count) {
  bool more = false;
  return read_content(path, count, false, more);
}

}  // namespace aegis::nn::detail
