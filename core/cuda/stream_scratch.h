// Internal to the CUDA backend: scratch bytes from the stream-ordered pool (cudaMallocAsync) of this
// thread's stream, released in stream order (cudaFreeAsync) after the work that used them, so that
// a caller stays capturable in a CUDA graph. Kernels never allocate; an op that needs workspace
// (cuDNN, the 16-bit operand copies, partial sums) holds one of these for the duration of its call.
#pragma once

#include <cstddef>

namespace aegis::cuda_backend {

class StreamScratch {
 public:
  explicit StreamScratch(std::size_t bytes);
  ~StreamScratch();
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  void* get() const { return m_ptr; }
  std::size_t bytes() const { return m_bytes; }

 private:
  void* m_ptr = nullptr;
  std::size_t m_bytes;
};

}  // namespace aegis::cuda_backend
