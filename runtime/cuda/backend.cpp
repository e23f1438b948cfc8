// CUDA runtime services: device queries, stream-ordered memory, per-thread library handles.
#include "runtime/cuda_backend.h"

#include <map>
#include <sstream>

#include "runtime/cuda/check.h"

namespace aegis::cuda_backend {

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later queries start clean
    return 0;
  }
  return n;
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

void* allocate(std::size_t bytes, int device) {
  CUDA_CHECK(cudaSetDevice(device));
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
  CUDA_CHECK(cudaStreamSynchronize(stream()));
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
  } catch (const std::exception&) {
    ok = false;  // an operation that cannot be captured; the work runs eagerly instead
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream(), &graph);
  if (!ok || end != cudaSuccess || graph == nullptr) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();  // clear the capture's error so that later calls start clean
    return false;
  }
  cudaGraphExec_t exec = nullptr;
  if (cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
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
