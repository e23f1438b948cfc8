#include <array>
#include <climits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>

#include "kernels/conv.h"
#include "kernels/cuda/round16.cuh"
#include "core/cuda/check.h"
#include "core/cuda_backend.h"

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

// The storage type of x, w and y under a precision: bf16 or fp16 for the 16-bit modes (cuDNN's
// "pseudo" configurations: 16-bit data, float32 compute type), float otherwise.
cudnnDataType_t data_type(MathPrecision precision) {
  return precision == MathPrecision::Bf16   ? CUDNN_DATA_BFLOAT16
         : precision == MathPrecision::Fp16 ? CUDNN_DATA_HALF
                                            : CUDNN_DATA_FLOAT;
}

// Full fp32 FMA math for Fp32: CUDNN_DEFAULT_MATH would allow TF32 tensor cores (10-bit mantissa)
// on Ampere and later, and gradients for attacks and bounds should match the CPU to fp32 rounding.
// Tf32 allows TF32 tensor cores; the 16-bit modes allow tensor cores on their 16-bit data.
cudnnMathType_t math_type(MathPrecision precision) {
  return precision == MathPrecision::Fp32   ? CUDNN_FMA_MATH
         : precision == MathPrecision::Tf32 ? CUDNN_DEFAULT_MATH
                                            : CUDNN_TENSOR_OP_MATH;
}

std::string shape_text(const Conv2dGeometry& g) {
  std::ostringstream os;
  os << "x [" << g.batch << "," << g.in_channels << "," << g.height << "," << g.width << "] w [" << g.out_channels
     << "," << g.in_channels << "," << g.kernel_h << "," << g.kernel_w << "] stride " << g.stride << " padding "
     << g.padding << " dilation " << g.dilation;
  return os.str();
}

TensorDesc tensor_desc(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                       cudnnDataType_t type = CUDNN_DATA_FLOAT) {
  cudnnTensorDescriptor_t raw = nullptr;
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&raw));
  TensorDesc d(raw);
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(raw, CUDNN_TENSOR_NCHW, type, as_int(n, "batch"), as_int(c, "channels"),
                                         as_int(h, "height"), as_int(w, "width")));
  return d;
}

FilterDesc filter_desc(const Conv2dGeometry& g, cudnnDataType_t type) {
  cudnnFilterDescriptor_t raw = nullptr;
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&raw));
  FilterDesc d(raw);
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(raw, type, CUDNN_TENSOR_NCHW, as_int(g.out_channels, "out channels"),
                                         as_int(g.in_channels, "in channels"), as_int(g.kernel_h, "kernel height"),
                                         as_int(g.kernel_w, "kernel width")));
  return d;
}

ConvDesc conv_desc(const Conv2dGeometry& g, MathPrecision precision) {
  cudnnConvolutionDescriptor_t raw = nullptr;
  CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&raw));
  ConvDesc d(raw);
  const int pad = as_int(g.padding, "padding"), stride = as_int(g.stride, "stride");
  const int dilation = as_int(g.dilation, "dilation");
  // PyTorch's Conv2d is a cross-correlation (no kernel flip); the compute type is float32 in every
  // mode (for 16-bit data this is cuDNN's pseudo-half / pseudo-bf16 configuration).
  CUDNN_CHECK(cudnnSetConvolution2dDescriptor(raw, pad, pad, stride, stride, dilation, dilation,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CUDNN_CHECK(cudnnSetConvolutionMathType(raw, math_type(precision)));
  return d;
}

// Every descriptor one convolution needs: input, output, bias [1,O,1,1] (float32), filter,
// convolution; x, y and w in the storage type of `precision`.
struct CudnnConv {
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  CudnnConv(const Conv2dGeometry& g, MathPrecision precision)
      : x(tensor_desc(g.batch, g.in_channels, g.height, g.width, data_type(precision))),
        y(tensor_desc(g.batch, g.out_channels, g.out_height(), g.out_width(), data_type(precision))),
        bias(tensor_desc(1, g.out_channels, 1, 1)),
        w(filter_desc(g, data_type(precision))),
        conv(conv_desc(g, precision)) {}
};

// From cuDNN's heuristic ranking (fastest first), the first algorithm that is deterministic and
// rounds as `precision` asks; failing that the first that rounds so; failing that the first that
// runs at all. Fp32 asks for fp32 FMA math; Tf32 for anything but a conversion of the float data
// to fp16 (CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION); the 16-bit modes take the ranking as it is (the
// data are 16-bit already). The convolution descriptor is then set to the math type that algorithm
// was ranked with.
template <class Perf>
Perf pick_algorithm(const Perf* perf, int count, cudnnConvolutionDescriptor_t conv, const char* pass,
                    MathPrecision precision) {
  auto usable = [](const Perf& p) { return p.status == CUDNN_STATUS_SUCCESS; };
  auto rounds_as_asked = [precision](const Perf& p) {
    if (precision == MathPrecision::Fp32) return p.mathType == CUDNN_FMA_MATH;
    if (precision == MathPrecision::Tf32) return p.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    return true;
  };
  const Perf* chosen = nullptr;
  for (int i = 0; i < count && !chosen; ++i)
    if (usable(perf[i]) && rounds_as_asked(perf[i]) && perf[i].determinism == CUDNN_DETERMINISTIC) chosen = &perf[i];
  for (int i = 0; i < count && !chosen; ++i)
    if (usable(perf[i]) && rounds_as_asked(perf[i])) chosen = &perf[i];
  for (int i = 0; i < count && !chosen; ++i)
    if (usable(perf[i])) chosen = &perf[i];
  if (!chosen) AEGIS_THROW(DeviceError, "conv2d on CUDA: cuDNN offers no " << pass << " algorithm for these shapes");
  CUDNN_CHECK(cudnnSetConvolutionMathType(conv, chosen->mathType));
  return *chosen;
}

// One thread per element of cols [N, C·kh·kw, H'·W'] (grid-stride): consecutive threads write
// consecutive output positions, so the stores coalesce and the loads are strided by the stride.
__global__ void unfold_kernel(const float* x, float* cols, long long total, int channels, int height, int width,
                              int kernel_h, int kernel_w, int stride, int padding, int dilation, int out_h, int out_w) {
  const long long plane = static_cast<long long>(out_h) * out_w;
  const long long rows = static_cast<long long>(channels) * kernel_h * kernel_w;
  for (long long i = blockIdx.x * 1LL * blockDim.x + threadIdx.x; i < total; i += 1LL * gridDim.x * blockDim.x) {
    const long long q = i % plane;
    const long long r = (i / plane) % rows;
    const long long n = i / (plane * rows);
    const int kj = static_cast<int>(r % kernel_w), ki = static_cast<int>((r / kernel_w) % kernel_h);
    const long long c = r / (static_cast<long long>(kernel_w) * kernel_h);
    const int ih = static_cast<int>(q / out_w) * stride - padding + ki * dilation;
    const int iw = static_cast<int>(q % out_w) * stride - padding + kj * dilation;
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
      as_int(g.padding, "padding"), as_int(g.dilation, "dilation"), as_int(g.out_height(), "output height"),
      as_int(g.out_width(), "output width"));
  CUDA_CHECK_LAUNCH();
}

namespace {

// A cached cuDNN plan: the descriptors of one convolution, the algorithm cuDNN's heuristic ranked
// first for it (pick_algorithm) and that algorithm's workspace size. Building one costs five
// descriptor set-ups and a heuristic query; a ResNet-20 training step runs about 60 convolution
// passes over a dozen distinct shapes, so each shape's plan is built once per host thread (cuDNN
// handles are per thread, core/cuda/backend.cpp) and device, and looked up afterwards.
enum class ConvPass { Forward, BackwardData, BackwardFilter };

struct ConvPlan {
  CudnnConv desc;
  int algo = 0;  // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t of the pass
  std::size_t workspace_bytes = 0;
  ConvPlan(const Conv2dGeometry& g, MathPrecision precision) : desc(g, precision) {}
};

using PlanKey = std::array<std::int64_t, 13>;
thread_local std::map<PlanKey, std::unique_ptr<ConvPlan>> t_plans;

std::unique_ptr<ConvPlan> build_plan(const Conv2dGeometry& g, MathPrecision precision, ConvPass pass) {
  auto plan = std::make_unique<ConvPlan>(g, precision);
  const CudnnConv& c = plan->desc;
  cudnnHandle_t handle = cuda_backend::cudnn_handle();
  int count = 0;
  if (pass == ConvPass::Forward) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, c.x.get(), c.w.get(), c.conv.get(), c.y.get(),
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf));
    const auto algo = pick_algorithm(perf, count, c.conv.get(), "forward", precision);
    CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, c.x.get(), c.w.get(), c.conv.get(), c.y.get(),
                                                        algo.algo, &plan->workspace_bytes));
    plan->algo = static_cast<int>(algo.algo);
  } else if (pass == ConvPass::BackwardData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, c.w.get(), c.y.get(), c.conv.get(), c.x.get(),
                                                            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf));
    const auto algo = pick_algorithm(perf, count, c.conv.get(), "backward-data", precision);
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle, c.w.get(), c.y.get(), c.conv.get(), c.x.get(),
                                                             algo.algo, &plan->workspace_bytes));
    plan->algo = static_cast<int>(algo.algo);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, c.x.get(), c.y.get(), c.conv.get(), c.w.get(),
                                                              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf));
    const auto algo = pick_algorithm(perf, count, c.conv.get(), "backward-filter", precision);
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, c.x.get(), c.y.get(), c.conv.get(), c.w.get(),
                                                               algo.algo, &plan->workspace_bytes));
    plan->algo = static_cast<int>(algo.algo);
  }
  return plan;
}

// The plan for (geometry, precision, pass) on the current device, built on first use.
const ConvPlan& plan_for(const Conv2dGeometry& g, MathPrecision precision, ConvPass pass) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const auto mode = static_cast<std::int64_t>(precision), pass_index = static_cast<std::int64_t>(pass);
  const PlanKey key{g.batch,  g.in_channels, g.height,   g.width, g.out_channels, g.kernel_h, g.kernel_w,
                    g.stride, g.padding,     g.dilation, mode,    pass_index,     device};
  const auto it = t_plans.find(key);
  if (it != t_plans.end()) return *it->second;
  return *t_plans.emplace(key, build_plan(g, precision, pass)).first->second;
}

// y = conv(x, w) by cuDNN with the cached plan; x, w and y in the plan's storage type. Returns the
// plan, whose descriptors the caller may reuse (the bias add).
const ConvPlan& cudnn_forward(const Conv2dGeometry& g, MathPrecision precision, const void* d_x, const void* d_w,
                              void* d_y) {
  const ConvPlan& p = plan_for(g, precision, ConvPass::Forward);
  const StreamScratch ws(p.workspace_bytes);
  const float one = 1.0f, zero = 0.0f;  // float scaling factors: the compute type is float32 in every mode
  CUDNN_CHECK(cudnnConvolutionForward(cuda_backend::cudnn_handle(), &one, p.desc.x.get(), d_x, p.desc.w.get(), d_w,
                                      p.desc.conv.get(), static_cast<cudnnConvolutionFwdAlgo_t>(p.algo), ws.get(),
                                      ws.bytes(), &zero, p.desc.y.get(), d_y));
  return p;
}

// The 16-bit forward (core/math_precision.h): x and w rounded to bf16/fp16 into stream-ordered
// scratch, cuDNN's pseudo-16-bit convolution (16-bit data, float32 accumulation, 16-bit output),
// the output widened back to float32 with the bias added in float32. No host synchronization, so
// it stays capturable in a CUDA graph.
void conv2d_forward_16bit(const Conv2dGeometry& g, MathPrecision precision, const float* d_x, const float* d_w,
                          const float* d_bias, float* d_y) {
  const std::int64_t x_count = g.batch * g.in_channels * g.height * g.width;
  const std::int64_t w_count = g.out_channels * g.in_channels * g.kernel_h * g.kernel_w;
  const std::int64_t plane = g.out_height() * g.out_width(), y_count = g.batch * g.out_channels * plane;
  const std::size_t x_bytes = packed_16bit_bytes(x_count), w_bytes = packed_16bit_bytes(w_count);
  const StreamScratch data(x_bytes + w_bytes + packed_16bit_bytes(y_count));
  char* base = static_cast<char*>(data.get());
  void *d_x16 = base, *d_w16 = base + x_bytes, *d_y16 = base + x_bytes + w_bytes;
  std::int64_t* d_overflow = math_overflow_counter();
  round_to_16bit(precision, d_x, d_x16, x_count, d_overflow);
  round_to_16bit(precision, d_w, d_w16, w_count, d_overflow);
  try {
    cudnn_forward(g, precision, d_x16, d_w16, d_y16);
  } catch (const DeviceError& e) {
    // Most likely cuDNN has no pseudo-16-bit kernel for this configuration on this GPU.
    AEGIS_THROW(DeviceError, "conv2d forward in " << math_precision_name(precision) << " on CUDA failed for "
                                                  << shape_text(g) << ": " << e.what());
  }
  widen_from_16bit(precision, d_y16, d_y, y_count, d_bias, g.out_channels, plane, d_overflow);
}

}  // namespace

void conv2d_forward(const Conv2dGeometry& g, const float* d_x, const float* d_w, const float* d_bias, float* d_y) {
  if (g.batch == 0) return;  // cuDNN rejects empty tensors
  const MathPrecision precision = math_precision();
  if (is_16_bit(precision)) {
    conv2d_forward_16bit(g, precision, d_x, d_w, d_bias, d_y);
    return;
  }
  const CudnnConv& c = cudnn_forward(g, precision, d_x, d_w, d_y).desc;
  // y += bias broadcast over N, H', W' (the plan's float32 bias and output descriptors).
  const float one = 1.0f;
  if (d_bias)
    CUDNN_CHECK(cudnnAddTensor(cuda_backend::cudnn_handle(), &one, c.bias.get(), d_bias, &one, c.y.get(), d_y));
}

// The backward passes compute in full fp32 whatever this thread's MathPrecision says: the reduced
// modes are for inference, and gradients (attacks, bounds, training) must match the CPU.
void conv2d_backward_data(const Conv2dGeometry& g, const float* d_gy, const float* d_w, float* d_dx) {
  if (g.batch == 0) return;
  const ConvPlan& p = plan_for(g, MathPrecision::Fp32, ConvPass::BackwardData);
  const StreamScratch ws(p.workspace_bytes);
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(cuda_backend::cudnn_handle(), &one, p.desc.w.get(), d_w, p.desc.y.get(),
                                           d_gy, p.desc.conv.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(p.algo),
                                           ws.get(), ws.bytes(), &zero, p.desc.x.get(), d_dx));
}

void conv2d_backward_filter(const Conv2dGeometry& g, const float* d_x, const float* d_gy, float* d_dw) {
  if (g.batch == 0) {  // an empty sum: the gradient is zero
    CUDA_CHECK(cudaMemsetAsync(d_dw, 0, sizeof(float) * g.out_channels * g.in_channels * g.kernel_h * g.kernel_w,
                               cuda_backend::stream()));
    return;
  }
  const ConvPlan& p = plan_for(g, MathPrecision::Fp32, ConvPass::BackwardFilter);
  const StreamScratch ws(p.workspace_bytes);
  const float one = 1.0f, zero = 0.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(
      cuda_backend::cudnn_handle(), &one, p.desc.x.get(), d_x, p.desc.y.get(), d_gy, p.desc.conv.get(),
      static_cast<cudnnConvolutionBwdFilterAlgo_t>(p.algo), ws.get(), ws.bytes(), &zero, p.desc.w.get(), d_dw));
}

std::int64_t conv2d_cached_plans() {
  return static_cast<std::int64_t>(t_plans.size());
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
