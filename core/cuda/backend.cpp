// CUDA runtime services: device queries, stream-ordered memory, per-thread library handles.
#include "core/cuda_backend.h"

#include <cstdint>
#include <map>
#include <set>
#include <sstream>

#include "core/cuda/check.h"

namespace aegis::cuda_backend {

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later queries start clean
    return 0;
  }
  return n;
}

void make_current(int device) {
  CUDA_CHECK(cudaSetDevice(device));
}

std::string device_description(int device) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::ostringstream os;
  os << prop.name << ", " << (prop.totalGlobalMem >> 30) << " GiB, sm_" << prop.major << prop.minor;
  return os.str();
}

std::string version_string() {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  std::ostringstream os;
  os << "runtime " << runtime / 1000 << "." << (runtime % 1000) / 10 << ", driver ";
  if (driver == 0) os << "none";
  else os << driver / 1000 << "." << (driver % 1000) / 10;
  os << ", cuDNN " << cudnnGetVersion();
  return os.str();
}

namespace {
// The default pool's release threshold is 0, so each stream synchronization hands the pool's
// free memory back to the driver and the next step allocates it again. Keep it instead (the
// threshold is the most memory the pool holds on to across a synchronization): once per device.
// Every allocation passes here, so the common case is a lookup in this thread's set of devices
// already seen, with no lock; setting the attribute again from another thread is harmless.
void keep_pool_memory(int device) {
  thread_local std::set<int> seen;
  if (seen.count(device)) return;
  cudaMemPool_t pool = nullptr;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  std::uint64_t keep = UINT64_MAX;
  CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  seen.insert(device);
}
}  // namespace

std::uint64_t pool_release_threshold(int device) {
  keep_pool_memory(device);
  cudaMemPool_t pool = nullptr;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  std::uint64_t value = 0;
  CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &value));
  return value;
}

void* allocate(std::size_t bytes, int device) {
  CUDA_CHECK(cudaSetDevice(device));
  keep_pool_memory(device);
  void* p = nullptr;
  CUDA_CHECK(cudaMallocAsync(&p, bytes, stream()));
  return p;
}

void release(void* ptr, int device) noexcept {
  // Destructors never throw: a failure here (driver shutting down) is ignored.
  if (cudaSetDevice(device) == cudaSuccess) cudaFreeAsync(ptr, stream());
}

void copy(void* dst, const void* src, std::size_t bytes, Copy kind) {
  const cudaMemcpyKind k = kind == Copy::HostToDevice   ? cudaMemcpyHostToDevice
                           : kind == Copy::DeviceToHost ? cudaMemcpyDeviceToHost
                                                        : cudaMemcpyDeviceToDevice;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, stream()));
  // Only a copy to the host must wait for the stream. A copy from pageable host memory returns
  // once the bytes are staged (the source may change afterwards), and device-to-device copies
  // are ordered on the stream like any kernel: waiting there would drain the GPU's queue.
  // Page-locked host memory (a wrapped buffer of another framework may be) is read by the DMA
  // engine later, so a copy from it waits too.
  bool wait = kind == Copy::DeviceToHost;
  if (kind == Copy::HostToDevice) {
    cudaPointerAttributes attributes{};
    if (cudaPointerGetAttributes(&attributes, src) == cudaSuccess) wait = attributes.type == cudaMemoryTypeHost;
    else cudaGetLastError();
  }
  if (wait) CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_to_device_async(void* d_dst, const void* h_src, std::size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(d_dst, h_src, bytes, cudaMemcpyHostToDevice, stream()));
}

Graph::~Graph() {
  if (m_exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(m_exec));
  if (m_graph) cudaGraphDestroy(static_cast<cudaGraph_t>(m_graph));
}

bool Graph::capture(const std::function<void()>& work) {
  AEGIS_CHECK(!m_graph && !m_exec, "a CUDA graph is captured once");
  CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
  bool ok = true;
  try {
    work();
  } catch (const std::exception& e) {
    ok = false;  // an operation that cannot be captured; the work runs eagerly instead
    m_failure = e.what();
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream(), &graph);
  if (!ok || end != cudaSuccess || graph == nullptr) {
    if (ok) m_failure = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(end);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();  // clear the capture's error so that later calls start clean
    return false;
  }
  cudaGraphExec_t exec = nullptr;
  // The captured work allocates and frees stream-ordered scratch; auto-free-on-launch releases
  // any allocation the graph leaves unfreed before the next replay.
  if (const cudaError_t inst = cudaGraphInstantiateWithFlags(&exec, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch);
      inst != cudaSuccess) {
    m_failure = std::string("cudaGraphInstantiateWithFlags: ") + cudaGetErrorString(inst);
    cudaGraphDestroy(graph);
    cudaGetLastError();
    return false;
  }
  m_graph = graph;
  m_exec = exec;
  return true;
}

void Graph::launch() {
  AEGIS_CHECK(m_exec != nullptr, "launch of a CUDA graph that was not captured");
  CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(m_exec), stream()));
  ++m_launches;
}

void memset_zero(void* ptr, std::size_t bytes) {
  CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, stream()));
}

void synchronize() {
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

namespace {
// Handles are expensive to create and not thread-safe to share, so each host thread keeps one
// per device. They live until the thread exits.
struct Handles {
  std::map<int, cublasHandle_t> cublas;
  std::map<int, cudnnHandle_t> cudnn;
  ~Handles() {
    for (auto& kv : cublas) cublasDestroy(kv.second);
    for (auto& kv : cudnn) cudnnDestroy(kv.second);
  }
};
thread_local Handles t_handles;
}  // namespace

cublasHandle_t cublas_handle() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  auto it = t_handles.cublas.find(dev);
  if (it != t_handles.cublas.end()) return it->second;
  cublasHandle_t h = nullptr;
  CUBLAS_CHECK(cublasCreate(&h));
  CUBLAS_CHECK(cublasSetStream(h, stream()));
  t_handles.cublas[dev] = h;
  return h;
}

cudnnHandle_t cudnn_handle() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  auto it = t_handles.cudnn.find(dev);
  if (it != t_handles.cudnn.end()) return it->second;
  cudnnHandle_t h = nullptr;
  CUDNN_CHECK(cudnnCreate(&h));
  CUDNN_CHECK(cudnnSetStream(h, stream()));
  t_handles.cudnn[dev] = h;
  return h;
}

}  // namespace aegis::cuda_backend
