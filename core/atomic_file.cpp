#include "core/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace aegis {

bool write_fully(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;  // no progress: treat as a full device
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

void write_file_atomically(const std::string& path, const std::function<bool(int fd)>& write) {
  std::string templ = path + ".tmp.XXXXXX";
  std::vector<char> name(templ.begin(), templ.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0)
    AEGIS_THROW(IoError, path << ": cannot create a temporary file " << templ << ": " << std::strerror(errno));
  const std::string tmp(name.data());
  // mkstemp creates the file with mode 0600; give it what a plain create would (0666 less umask).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  bool ok = ::fchmod(fd, 0666 & ~mask) == 0 && write(fd) && ::fsync(fd) == 0;
  int saved_errno = ok ? 0 : errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    saved_errno = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    AEGIS_THROW(IoError, path << ": writing " << tmp << " failed: " << std::strerror(saved_errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    saved_errno = errno;
    ::unlink(tmp.c_str());
    AEGIS_THROW(IoError, path << ": cannot rename " << tmp << " into place: " << std::strerror(saved_errno));
  }
}

}  // namespace aegis
