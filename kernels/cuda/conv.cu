#include <climits>
#include <memory>
#include <type_traits>

#include "kernels/conv.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda_backend.h"

namespace aegis::kernels::cuda {
namespace {

// cuDNN descriptors owned by unique_ptr, so a throw part-way through setting them up leaks none.
template <class Desc, cudnnStatus_t (*Destroy)(Desc)>
struct DescriptorDeleter {
  void operator()(Desc d) const noexcept { Destroy(d); }
};
template <class Desc, cudnnStatus_t (*Destroy)(Desc)>
using Descriptor = std::unique_ptr<std::remove_pointer_t<Desc>, DescriptorDeleter<Desc, Destroy>>;
using TensorDesc = Descriptor<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor>;
using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnDestroyFilterDescriptor>;
using ConvDesc = Descriptor<cudnnConvolutionDescriptor_t, cudnnDestroyConvolutionDescriptor>;

int as_int(std::int64_t v, const char* what) {
  AEGIS_CHECK_AS(ShapeError, v >= 0 && v <= INT_MAX,
                 "conv2d on CUDA: " << what << " " << v << " exceeds cuDNN's int range");
  return static_cast<int>(v);
}

TensorDesc tensor_desc(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
  cudnnTensorDescriptor_t raw = nullptr;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&raw));
  TensorDesc d(raw);
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(raw, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, as_int(n, "batch"),
                                         as_int(c, "channels"), as_int(h, "height"), as_int(w, "width")));
  return d;
}

FilterDesc filter_desc(const Conv2dGeometry& g) {
  cudnnFilterDescriptor_t raw = nullptr;
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&raw));
  FilterDesc d(raw);
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(raw, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                         as_int(g.out_channels, "out channels"), as_int(g.in_channels, "in channels"),
                                         as_int(g.kernel_h, "kernel height"), as_int(g.kernel_w, "kernel width")));
  return d;
}

ConvDesc conv_desc(const Conv2dGeometry& g) {
  cudnnConvolutionDescriptor_t raw = nullptr;
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&raw));
  ConvDesc d(raw);
  const int pad = as_int(g.padding, "padding"), stride = as_int(g.stride, "stride");
  // PyTorch's Conv2d is a cross-correlation (no kernel flip); accumulate in fp32.
  CUDNN_CHECK(
      cudnnSetConvolution2dDescriptor(raw, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  // Full fp32 FMA math: CUDNN_DEFAULT_MATH would allow TF32 tensor cores (10-bit mantissa) on
  // Ampere and later, and gradients for attacks and bounds should match the CPU to fp32 rounding.
  // Inside a cuda_backend::TensorCoreMathScope, TF32 tensor-core math is allowed instead.
  CUDNN_CHECK(cudnnSetConvolutionMathType(raw, cuda_backend::tensor_core_math() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
  return d;
}

// Every descriptor one convolution needs: input, output, bias [1,O,1,1], filter, convolution.
struct CudnnConv {
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  explicit CudnnConv(const Conv2dGeometry& g)
      : x(tensor_desc(g.batch, g.in_channels, g.height, g.width)),
        y(tensor_desc(g.batch, g.out_channels, g.out_height(), g.out_width())),
        bias(tensor_desc(1, g.out_channels, 1, 1)),
        w(filter_desc(g)),
        conv(conv_desc(g)) {}
};

// Scratch for one cuDNN call from the stream-ordered pool; freed in stream order, so the memory
// goes back only after the call that used it has run.
class Workspace {
 public:
  explicit Workspace(std::size_t bytes) : m_bytes(bytes) {
    if (bytes > 0) CUDA_CHECK(cudaMallocAsync(&m_ptr, bytes, cuda_backend::stream()));
  }
  ~Workspace() {
    if (m_ptr) cudaFreeAsync(m_ptr, cuda_backend::stream());
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  void* get() const { return m_ptr; }
  std::size_t bytes() const { return m_bytes; }

 private:
  void* m_ptr = nullptr;
  std::size_t m_bytes;
};

// From cuDNN's heuristic ranking (fastest first), the first algorithm that is deterministic and uses
// fp32 FMA math; failing that the first fp32 one; failing that the first that runs at all. The
// convolution descriptor is then set to the math type that algorithm was ranked with.
template <class Perf>
Perf pick_algorithm(const Perf* perf, int count, cudnnConvolutionDescriptor_t conv, const char* pass) {
  auto usable = [](const Perf& p) { return p.status == CUDNN_STATUS_SUCCESS; };
  // Under tensor-core math the ranking is taken as cuDNN gives it (TF32 algorithms included).
  const bool any_math = cuda_backend::tensor_core_math();
  auto fp32 = [any_math](const Perf& p) { return any_math || p.mathType == CUDNN_FMA_MATH; };
  const Perf* chosen = nullptr;
  for (int i = 0; i < count && !chosen; ++i)
    if (usable(perf[i]) && fp32(perf[i]) && perf[i].determinism == CUDNN_DETERMINISTIC) chosen = &perf[i];
  for (int i = 0; i < count && !chosen; ++i)
    if (usable(perf[i]) && fp32(perf[i])) chosen = &perf[i];
  for (int i = 0; i < count && !chosen; ++i)
    if (usable(perf[i])) chosen = &perf[i];
  if (!chosen) AEGIS_THROW(DeviceError, "conv2d on CUDA: cuDNN offers no " << pass << " algorithm for these shapes");
  CUDNN_CHECK(cudnnSetConvolutionMathType(conv, chosen->mathType));
  return *chosen;
}

// One thread per element of cols [N, C·kh·kw, H'·W'] (grid-stride): consecutive threads write
// consecutive output positions, so the stores coalesce and the loads are strided by the stride.
__global__ void unfold_kernel(const float* x, float* cols, long long total, int channels, int height, int width,
                              int kernel_h, int kernel_w, int stride, int padding, int out_h, int out_w) {
  const long long plane = static_cast<long long>(out_h) * out_w;
  const long long rows = static_cast<long long>(channels) * kernel_h * kernel_w;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < total; i += 1LL * gridDim.x * blockDim.x) {
    const long long q = i % plane;
    const long long r = (i / plane) % rows;
    const long long n = i / (plane * rows);
    const int kj = static_cast<int>(r % kernel_w), ki = static_cast<int>((r / kernel_w) % kernel_h);
    const long long c = r / (static_cast<long long>(kernel_w) * kernel_h);
    const int ih = static_cast<int>(q / out_w) * stride - padding + ki;
    const int iw = static_cast<int>(q % out_w) * stride - padding + kj;
    cols[i] = (ih >= 0 && ih < height && iw >= 0 && iw < width)
                  ? x[((n * channels + c) * height + ih) * static_cast<long long>(width) + iw]
                  : 0.0f;
  }
}

}  // namespace

void conv2d_unfold(const Conv2dGeometry& g, const float* d_x, float* d_cols) {
  const long long total = g.batch * g.in_channels * g.kernel_h * g.kernel_w * g.out_height() * g.out_width();
  if (total == 0) return;
  unfold_kernel<<<cuda_backend::grid_for(total, 256), 256, 0, cuda_backend::stream()>>>(
      d_x, d_cols, total, as_int(g.in_channels, "in channels"), as_int(g.height, "height"), as_int(g.width, "width"),
      as_int(g.kernel_h, "kernel height"), as_int(g.kernel_w, "kernel width"), as_int(g.stride, "stride"),
      as_int(g.padding, "padding"), as_int(g.out_height(), "output height"), as_int(g.out_width(), "output width"));
  CUDA_CHECK_LAUNCH();
}

void conv2d_forward(const Conv2dGeometry& g, const float* d_x, const float* d_w, const float* d_bias, float* d_y) {
  if (g.batch == 0) return;  // cuDNN rejects empty tensors
  const CudnnConv c(g);
  cudnnHandle_t handle = cuda_backend::cudnn_handle();
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int count = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, c.x.get(), c.w.get(), c.conv.get(), c.y.get(),
                                                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf));
  const auto algo = pick_algorithm(perf, count, c.conv.get(), "forward");
  std::size_t bytes = 0;
  CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, c.x.get(), c.w.get(), c.conv.get(), c.y.get(), algo.algo,
                                                      &bytes));
  const Workspace ws(bytes);
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(cudnnConvolutionForward(handle, &one, c.x.get(), d_x, c.w.get(), d_w, c.conv.get(), algo.algo, ws.get(),
                                      ws.bytes(), &zero, c.y.get(), d_y));
  // y += bias broadcast over N, H', W'.
  if (d_bias) CUDNN_CHECK(cudnnAddTensor(handle, &one, c.bias.get(), d_bias, &one, c.y.get(), d_y));
}

void conv2d_backward_data(const Conv2dGeometry& g, const float* d_gy, const float* d_w, float* d_dx) {
  if (g.batch == 0) return;
  const CudnnConv c(g);
  cudnnHandle_t handle = cuda_backend::cudnn_handle();
  cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  int count = 0;
  CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, c.w.get(), c.y.get(), c.conv.get(), c.x.get(),
                                                          CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf));
  const auto algo = pick_algorithm(perf, count, c.conv.get(), "backward-data");
  std::size_t bytes = 0;
  CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle, c.w.get(), c.y.get(), c.conv.get(), c.x.get(),
                                                           algo.algo, &bytes));
  const Workspace ws(bytes);
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(handle, &one, c.w.get(), d_w, c.y.get(), d_gy, c.conv.get(), algo.algo,
                                           ws.get(), ws.bytes(), &zero, c.x.get(), d_dx));
}

void conv2d_backward_filter(const Conv2dGeometry& g, const float* d_x, const float* d_gy, float* d_dw) {
  if (g.batch == 0) {  // an empty sum: the gradient is zero
    CUDA_CHECK(cudaMemsetAsync(d_dw, 0, sizeof(float) * g.out_channels * g.in_channels * g.kernel_h * g.kernel_w,
                               cuda_backend::stream()));
    return;
  }
  const CudnnConv c(g);
  cudnnHandle_t handle = cuda_backend::cudnn_handle();
  cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  int count = 0;
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, c.x.get(), c.y.get(), c.conv.get(), c.w.get(),
                                                            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf));
  const auto algo = pick_algorithm(perf, count, c.conv.get(), "backward-filter");
  std::size_t bytes = 0;
  CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, c.x.get(), c.y.get(), c.conv.get(), c.w.get(),
                                                             algo.algo, &bytes));
  const Workspace ws(bytes);
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, &one, c.x.get(), d_x, c.y.get(), d_gy, c.conv.get(), algo.algo,
                                             ws.get(), ws.bytes(), &zero, c.w.get(), d_dw));
}

void conv2d_backward_bias(const Conv2dGeometry& g, const float* d_gy, float* d_db) {
  if (g.batch == 0) {
    CUDA_CHECK(cudaMemsetAsync(d_db, 0, sizeof(float) * g.out_channels, cuda_backend::stream()));
    return;
  }
  const TensorDesc gy = tensor_desc(g.batch, g.out_channels, g.out_height(), g.out_width());
  const TensorDesc db = tensor_desc(1, g.out_channels, 1, 1);
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardBias(cuda_backend::cudnn_handle(), &one, gy.get(), d_gy, &zero, db.get(), d_db));
}

}  // namespace aegis::kernels::cuda
