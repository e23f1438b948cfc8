#include "certify/smoothing.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "certify/stats.h"
#include "kernels/smoothing.h"
#include "runtime/config.h"
#include "runtime/cuda_backend.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::certify {

namespace {

// Input floats per forward pass on the CPU (see sample_counts): 1 MiB, 85 rows of a 3×32×32 image.
constexpr std::int64_t kCpuChunkFloats = std::int64_t{1} << 18;

// int64 buffer on a device (the Tensor type has no int64): counts and key indices.
class Int64Buffer {
 public:
  Int64Buffer(std::size_t n, Device device)
      : m_n(n), m_device(device), m_storage(Storage::allocate(std::max<std::size_t>(n, 1) * 8, device)) {}
  std::int64_t* data() const { return static_cast<std::int64_t*>(m_storage->data()); }
  void upload(const std::vector<std::int64_t>& host) {
    if (!m_device.is_cuda()) {
      std::copy(host.begin(), host.end(), data());
      return;
    }
#if AEGIS_HAS_CUDA
    cuda_backend::copy(data(), host.data(), host.size() * 8, cuda_backend::Copy::HostToDevice);
#endif
  }
  std::vector<std::int64_t> download() const {
    std::vector<std::int64_t> host(m_n);
    if (!m_device.is_cuda()) {
      std::copy(data(), data() + m_n, host.begin());
      return host;
    }
#if AEGIS_HAS_CUDA
    cuda_backend::copy(host.data(), data(), m_n * 8, cuda_backend::Copy::DeviceToHost);
#endif
    return host;
  }

 private:
  std::size_t m_n;
  Device m_device;
  std::shared_ptr<Storage> m_storage;
};

std::uint32_t purpose_of(SamplePhase phase) {
  // Each phase its own counter space: kPurposeSmoothing + 16·phase keeps clear of the other purposes.
  return philox::kPurposeSmoothing + 16u * static_cast<std::uint32_t>(phase);
}

}  // namespace

void check_smoothing_options(const SmoothingOptions& o) {
  AEGIS_CHECK(std::isfinite(o.sigma) && o.sigma > 0.0,
              "smoothing: sigma=" << o.sigma << " must be positive and finite");
  // The noise is σ·z in float32 with |z| < 7 (a Box–Muller draw from 32-bit uniforms); beyond
  // this bound σ·z overflows to ±inf and every count, and so every radius, would be meaningless.
  AEGIS_CHECK(o.sigma <= kMaxSmoothingSigma,
              "smoothing: sigma=" << o.sigma << " exceeds " << kMaxSmoothingSigma << ": the float32 noise would overflow");
  AEGIS_CHECK(o.n0 >= 1, "smoothing: n0=" << o.n0 << " must be at least 1");
  AEGIS_CHECK(o.n >= 1, "smoothing: n=" << o.n << " must be at least 1");
  AEGIS_CHECK(o.alpha > 0.0 && o.alpha < 1.0, "smoothing: alpha=" << o.alpha << " must lie in (0, 1)");
  AEGIS_CHECK(o.batch >= 1, "smoothing: batch=" << o.batch << " must be at least 1");
}

SmoothedClassifier::SmoothedClassifier(nn::Module& base, Shape input_shape, std::int64_t num_classes, Device device)
    : m_base(base), m_input_shape(std::move(input_shape)), m_num_classes(num_classes), m_device(device) {
  AEGIS_CHECK(num_classes >= 2, "smoothing: num_classes=" << num_classes << " must be at least 2");
  AEGIS_CHECK(!m_input_shape.empty() && shape_numel(m_input_shape) > 0,
              "smoothing: input shape " << shape_str(m_input_shape) << " is empty");
}

std::vector<std::int64_t> SmoothedClassifier::sample_counts(const Tensor& x, const std::vector<std::uint64_t>& ids,
                                                            std::int64_t num, SamplePhase phase,
                                                            const SmoothingOptions& options,
                                                            const SampleCallback& on_batch) {
  check_smoothing_options(options);
  AEGIS_CHECK_AS(DeviceError, options.precision == MathPrecision::Fp32 || m_device.is_cuda(),
                 "smoothing: " << math_precision_name(options.precision)
                               << " forward passes need a CUDA device; this run is on " << m_device.str());
  AEGIS_CHECK(num >= 1, "smoothing: number of samples " << num << " must be at least 1");
  check_dtype(x, DType::F32, "smoothing input");
  AEGIS_CHECK_AS(ShapeError, x.dim() == static_cast<std::int64_t>(m_input_shape.size()) + 1,
                 "smoothing: input " << x.describe() << " must be [m, " << shape_str(m_input_shape) << "]");
  Shape per_input(x.shape().begin() + 1, x.shape().end());
  AEGIS_CHECK_AS(
      ShapeError, per_input == m_input_shape,
      "smoothing: input " << x.describe() << " does not match the model's input shape " << shape_str(m_input_shape));
  const std::int64_t m = x.size(0);
  AEGIS_CHECK_AS(ShapeError, static_cast<std::int64_t>(ids.size()) == m,
                 "smoothing: " << ids.size() << " key indices for " << m << " inputs");
  const std::int64_t k = m_num_classes;
  if (m == 0) return {};
  for (std::uint64_t id : ids)
    AEGIS_CHECK(id <= 0xffffffffull, "smoothing: input index " << id << " exceeds the 32-bit key range");
  ops::check_finite(x, "smoothing input");

  const std::int64_t d = shape_numel(m_input_shape);
  const Tensor xd = x.to(m_device);
  std::vector<std::int64_t> host_ids(ids.begin(), ids.end());
  Int64Buffer d_ids(static_cast<std::size_t>(m), m_device);
  d_ids.upload(host_ids);
  Int64Buffer d_counts(static_cast<std::size_t>(m * k), m_device);
  d_counts.upload(std::vector<std::int64_t>(static_cast<std::size_t>(m * k), 0));
  Int64Buffer d_nan(1, m_device);
  d_nan.upload({0});

  const std::int64_t total = m * num;
  const std::int64_t batch_rows = std::min(options.batch, total);
  Shape batch_shape = m_input_shape;
  batch_shape.insert(batch_shape.begin(), batch_rows);
  Tensor noisy = Tensor::empty(batch_shape, DType::F32, m_device);

  kernels::SmoothingBatch b;
  b.samples = num;
  b.d = d;
  b.seed = options.seed;
  b.purpose = purpose_of(phase);
  b.sigma = static_cast<float>(options.sigma);

  // 16-bit modes count the values that leave the 16-bit range into d_overflow, on the device (so
  // the captured graph holds the counting too); a nonzero count is an error below.
  const bool count_overflow = is_16_bit(options.precision);
  Int64Buffer d_overflow(1, m_device);
  if (count_overflow) d_overflow.upload({0});
  MathPrecisionScope math(options.precision, count_overflow ? d_overflow.data() : nullptr);
  nn::FrozenScope frozen(m_base);
  // One batch: noise in place, forward without a tape, argmax counts. Returns the NaN rows it saw
  // (the CPU; on the GPU they accumulate in d_nan).
  const auto run_rows = [&](const kernels::SmoothingBatch& batch, Tensor rows) -> std::int64_t {
    AEGIS_DISPATCH(m_device, noisy_batch(rows.data<float>(), xd.data<float>(), d_ids.data(), batch));
    const Tensor logits = m_base.forward(autograd::Var(rows)).value();
    AEGIS_CHECK_AS(ShapeError, logits.dim() == 2 && logits.size(0) == batch.rows && logits.size(1) == k,
                   "smoothing: the model returned " << logits.describe() << " for " << batch.rows
                                                    << " inputs, expected [" << batch.rows << ", " << k << "] logits");
    if (m_device.is_cuda()) {
#if AEGIS_HAS_CUDA
      kernels::cuda::count_argmax(d_counts.data(), logits.data<float>(), batch, k, d_nan.data());
#endif
      return 0;
    }
    return kernels::cpu::count_argmax(d_counts.data(), logits.data<float>(), batch, k);
  };
  // On the CPU a batch runs as consecutive chunks of about kCpuChunkFloats input floats, so that
  // a chunk's activations stay in the caches through the whole network instead of streaming
  // through memory layer by layer (ResNet-20 at batch 1000: 1400 → 2000 samples/s on 2 cores).
  // The noise of a row is keyed by its copy number, and every op of a forward pass treats rows
  // independently, so the counts are the same as for one pass over the whole batch.
  const std::int64_t chunk_rows =
      m_device.is_cuda() ? batch_rows
                         : std::clamp<std::int64_t>(kCpuChunkFloats / std::max<std::int64_t>(d, 1), 8, batch_rows);
  const auto run_batch = [&](const kernels::SmoothingBatch& batch) -> std::int64_t {
    // Equal chunks (a batch of 100 runs as 2 × 50, not 85 + 15); one chunk on the GPU.
    const std::int64_t chunks = (batch.rows + chunk_rows - 1) / chunk_rows;
    const std::int64_t rows_each = (batch.rows + chunks - 1) / chunks;
    std::int64_t nan = 0;
    for (std::int64_t off = 0; off < batch.rows; off += rows_each) {
      kernels::SmoothingBatch part = batch;
      part.row_start = batch.row_start + off;
      part.rows = std::min(rows_each, batch.rows - off);
      nan += run_rows(part, noisy.rows(off, off + part.rows));
    }
    return nan;
  };
#if AEGIS_HAS_CUDA
  // On the GPU the full batches after the first replay one captured CUDA graph of run_batch (the
  // first runs eagerly: it creates the library handles and warms the allocator). The graph reads
  // the batch's first copy number from a device scalar set before each replay.
  cuda_backend::Graph graph;
  bool try_graph = m_device.is_cuda() && options.cuda_graphs && total / batch_rows >= 3;
  Int64Buffer d_row_start(1, m_device);
#endif
  std::int64_t nan_rows = 0;
  for (std::int64_t start = 0; start < total; start += batch_rows) {
    b.row_start = start;
    b.rows = std::min(batch_rows, total - start);
    bool replayed = false;
#if AEGIS_HAS_CUDA
    if (try_graph && start > 0 && b.rows == batch_rows) {
      if (!graph.ready()) {
        kernels::SmoothingBatch captured = b;
        captured.row_start_device = d_row_start.data();
        try_graph = graph.capture([&] { run_batch(captured); });
      }
      if (graph.ready()) {
        cuda_backend::copy_to_device_async(d_row_start.data(), &start, sizeof start);
        graph.launch();
        replayed = true;
      }
    }
#endif
    if (!replayed) nan_rows += run_batch(b);
    if (on_batch) on_batch(b.rows);
  }
  if (m_device.is_cuda()) nan_rows = d_nan.download()[0];
  const std::int64_t overflowed = count_overflow ? d_overflow.download()[0] : 0;
  AEGIS_CHECK_AS(NumericError, overflowed == 0,
                 "smoothing: " << overflowed << " values of the " << math_precision_name(options.precision)
                               << " forward pass left " << math_precision_name(options.precision)
                               << "'s range (fp16: |v| > 65504) in matrix-product or convolution operands or "
                                  "outputs; bf16 (float32's range) or fp32 avoids this");
  AEGIS_CHECK_AS(NumericError, nan_rows == 0,
                 "smoothing: the model produced NaN logits for " << nan_rows << " of " << total << " noisy inputs");
  return d_counts.download();
}

std::vector<Certificate> SmoothedClassifier::certify(const Tensor& x, const std::vector<std::uint64_t>& ids,
                                                     const SmoothingOptions& options, const SampleCallback& on_batch) {
  check_smoothing_options(options);
  const std::int64_t k = m_num_classes;
  // Alg. 2: ĉA from n0 selection samples, then nA from n fresh estimation samples.
  const std::vector<std::int64_t> selection =
      sample_counts(x, ids, options.n0, SamplePhase::Selection, options, on_batch);
  const std::vector<std::int64_t> estimation =
      sample_counts(x, ids, options.n, SamplePhase::Estimation, options, on_batch);
  std::vector<Certificate> out(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t* sel = selection.data() + i * k;
    const std::int64_t top = std::max_element(sel, sel + k) - sel;  // first maximum on ties
    Certificate& c = out[i];
    c.selected = top;
    c.count = estimation[i * k + top];
    c.p_lower = clopper_pearson_lower(c.count, options.n, options.alpha);
    if (c.p_lower < 0.5) continue;  // abstain
    c.prediction = top;
    c.radius = options.sigma * normal_quantile(c.p_lower);  // Thm 1 with p̄B = 1 − p̲A
    AEGIS_CHECK_AS(NumericError, std::isfinite(c.radius), "smoothing: radius " << c.radius << " is not finite");
  }
  return out;
}

std::vector<Prediction> SmoothedClassifier::predict(const Tensor& x, const std::vector<std::uint64_t>& ids,
                                                    const SmoothingOptions& options, const SampleCallback& on_batch) {
  check_smoothing_options(options);
  const std::int64_t k = m_num_classes;
  const std::vector<std::int64_t> counts = sample_counts(x, ids, options.n, SamplePhase::Prediction, options, on_batch);
  std::vector<Prediction> out(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t* c = counts.data() + i * k;
    // Alg. 1: the top two classes (first index wins ties), then the two-sided binomial test.
    std::int64_t a = 0;
    for (std::int64_t j = 1; j < k; ++j)
      if (c[j] > c[a]) a = j;
    std::int64_t b = a == 0 ? 1 : 0;
    for (std::int64_t j = 0; j < k; ++j)
      if (j != a && c[j] > c[b]) b = j;
    Prediction& p = out[i];
    p.count_a = c[a];
    p.count_b = c[b];
    p.p_value = binomial_test_two_sided(p.count_a, p.count_a + p.count_b);
    if (p.p_value <= options.alpha) p.prediction = a;
  }
  return out;
}

}  // namespace aegis::certify
