#include "certify/smoothing.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "certify/stats.h"
#include "kernels/smoothing.h"
#include "core/cuda_backend.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::certify {

namespace {

// Input floats per forward pass on the CPU (see sample_counts): 1 MiB, 85 rows of a 3×32×32 image.
constexpr std::int64_t kCpuChunkFloats = std::int64_t{1} << 18;

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
  const Tensor d_ids = Tensor::from_vector(std::vector<std::int64_t>(ids.begin(), ids.end()), {m}).to(m_device);
  Tensor d_counts = Tensor::zeros({m * k}, DType::I64, m_device);
  Tensor d_nan = Tensor::zeros({1}, DType::I64, m_device);

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
  Tensor d_overflow = Tensor::zeros({1}, DType::I64, m_device);
  MathPrecisionScope math(options.precision, count_overflow ? d_overflow.data<std::int64_t>() : nullptr);
  nn::FrozenScope frozen(m_base);
  // One batch: noise in place, forward without a tape, argmax counts; NaN rows accumulate in d_nan.
  const auto run_rows = [&](const kernels::SmoothingBatch& batch, Tensor rows) {
    AEGIS_DISPATCH(m_device, noisy_batch(rows.data<float>(), xd.data<float>(), d_ids.data<std::int64_t>(), batch));
    const Tensor logits = m_base.forward(autograd::Var(rows)).value();
    AEGIS_CHECK_AS(ShapeError, logits.dim() == 2 && logits.size(0) == batch.rows && logits.size(1) == k,
                   "smoothing: the model returned " << logits.describe() << " for " << batch.rows
                                                    << " inputs, expected [" << batch.rows << ", " << k << "] logits");
    AEGIS_DISPATCH(m_device, count_argmax(d_counts.data<std::int64_t>(), logits.data<float>(), batch, k,
                                          d_nan.data<std::int64_t>()));
  };
  // On the CPU a batch runs as consecutive chunks of about kCpuChunkFloats input floats, so that
  // a chunk's activations stay in the caches through the whole network instead of streaming
  // through memory layer by layer (ResNet-20 at batch 1000: 1400 → 2000 samples/s on 2 cores).
  // The noise of a row is keyed by its copy number, and every op of a forward pass treats rows
  // independently, so the counts are the same as for one pass over the whole batch.
  const std::int64_t chunk_rows =
      m_device.is_cuda() ? batch_rows
                         : std::clamp<std::int64_t>(kCpuChunkFloats / std::max<std::int64_t>(d, 1), 8, batch_rows);
  const auto run_batch = [&](const kernels::SmoothingBatch& batch) {
    // Equal chunks (a batch of 100 runs as 2 × 50, not 85 + 15); one chunk on the GPU.
    const std::int64_t chunks = (batch.rows + chunk_rows - 1) / chunk_rows;
    const std::int64_t rows_each = (batch.rows + chunks - 1) / chunks;
    for (std::int64_t off = 0; off < batch.rows; off += rows_each) {
      kernels::SmoothingBatch part = batch;
      part.row_start = batch.row_start + off;
      part.rows = std::min(rows_each, batch.rows - off);
      run_rows(part, noisy.rows(off, off + part.rows));
    }
  };
  // On the GPU the full batches after the first replay one captured CUDA graph of run_batch (the
  // first runs eagerly: it creates the library handles, builds the cuDNN plans and warms the
  // allocator). The graph reads the batch's first copy number from a device scalar, and its last
  // node advances that scalar by one batch, so replays need nothing from the host.
  cuda_backend::Graph graph;
  bool try_graph = m_device.is_cuda() && options.cuda_graphs && total / batch_rows >= 3;
  Tensor d_row_start;  // the replayed batch's first copy number, made when a graph is captured
  for (std::int64_t start = 0; start < total; start += batch_rows) {
    b.row_start = start;
    b.rows = std::min(batch_rows, total - start);
    bool replayed = false;
    if (try_graph && start > 0 && b.rows == batch_rows) {
      if (!graph.ready()) {
        d_row_start = Tensor::empty({1}, DType::I64, m_device);
        kernels::SmoothingBatch captured = b;
        captured.row_start_device = d_row_start.data<std::int64_t>();
        try_graph = graph.capture([&] {
          run_batch(captured);
          AEGIS_DISPATCH(m_device, advance_row_start(d_row_start.data<std::int64_t>(), batch_rows));
        });
        if (try_graph) d_row_start.copy_from(Tensor::from_vector(std::vector<std::int64_t>{start}, {1}));
        else m_stats.graph_failure = graph.failure();
      }
      if (graph.ready()) {
        graph.launch();
        replayed = true;
        ++m_stats.graph_launches;
      }
    }
    if (!replayed) {
      run_batch(b);
      ++m_stats.eager_batches;
    }
    if (on_batch) on_batch(b.rows);
  }
  const std::int64_t nan_rows = d_nan.to_vector<std::int64_t>()[0];
  const std::int64_t overflowed = count_overflow ? d_overflow.to_vector<std::int64_t>()[0] : 0;
  AEGIS_CHECK_AS(NumericError, overflowed == 0,
                 "smoothing: " << overflowed << " values of the " << math_precision_name(options.precision)
                               << " forward pass left " << math_precision_name(options.precision)
                               << "'s range (fp16: |v| > 65504) in matrix-product or convolution operands or "
                                  "outputs; bf16 (float32's range) or fp32 avoids this");
  AEGIS_CHECK_AS(NumericError, nan_rows == 0,
                 "smoothing: the model produced NaN logits for " << nan_rows << " of " << total << " noisy inputs");
  return d_counts.to_vector<std::int64_t>();
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
