// Writing a file so that readers see either the old contents or the complete new ones: the bytes
// go to a temporary file created with mkstemp beside the target (a unique name per writer, so two
// processes saving to the same path never share one), are synced, and the temporary file is then
// renamed over the target. On any failure (a full disk: a short write) the temporary file is
// removed and the target is left as it was.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace aegis {

// Writes all of [data, data + size) to fd, retrying short writes and EINTR; false with errno set
// on failure (ENOSPC when the disk is full).
bool write_fully(int fd, const void* data, std::size_t size);

// Calls write(fd) on a fresh temporary file beside `path`; write returns false (errno set) when a
// write failed. Then fsync, rename onto `path`. Throws IoError naming `path` on any failure.
void write_file_atomically(const std::string& path, const std::function<bool(int fd)>& write);

}  // namespace aegis
