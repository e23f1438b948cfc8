#include "core/cuda/stream_scratch.h"

#include "core/cuda/check.h"

namespace aegis::cuda_backend {

StreamScratch::StreamScratch(std::size_t bytes) : m_bytes(bytes) {
  if (bytes > 0) CUDA_CHECK(cudaMallocAsync(&m_ptr, bytes, stream()));
}

StreamScratch::~StreamScratch() {
  if (m_ptr) cudaFreeAsync(m_ptr, stream());  // destructors never throw
}

}  // namespace aegis::cuda_backend
