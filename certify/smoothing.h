// Randomized smoothing (Cohen, Rosenfeld, Kolter 2019, "Certified Adversarial Robustness via
// Randomized Smoothing"). The smoothed classifier g(x) = argmax_c P[f(x + ε) = c], ε ~ N(0, σ²I),
// is certified from Monte Carlo counts of the base classifier f's predictions on noisy copies.
//   PREDICT (Alg. 1): n samples; the two most frequent classes nA ≥ nB; return cA when the
//     two-sided binomial test of nA against Binomial(nA + nB, ½) has p-value ≤ α, else abstain.
//   CERTIFY (Alg. 2): n0 samples select ĉA (the most frequent class); n fresh samples count
//     nA for ĉA; p̲A = the one-sided (1 − α) Clopper-Pearson lower bound of nA/n; abstain when
//     p̲A < ½, else return ĉA with radius R = σ·Φ⁻¹(p̲A) (Thm 1 with p̄B = 1 − p̲A).
// Noise is added in [0, 1] pixel space, before any normalization inside the model, without
// clipping. Sample s of input `id` in a phase (selection, estimation, prediction) draws element
// j of its noise as philox::normal-like values keyed by (seed, kPurposeSmoothing + phase, id)
// at element index s·d + j (kernels/smoothing.h), so a certificate depends only on (model, x,
// id, seed, n0, n, σ): a sweep can be split, killed and resumed and still give the same rows,
// and CPU and CUDA draw the same noise.
// Samples are taken in fixed-size batches of `batch` rows: the inputs are copied into the batch
// and the noise is generated in place on the device, the model runs forward without a tape, and
// the argmax per row is counted per input on the device, so only counts reach the host. When n0
// or n is smaller than the batch, several inputs share one batch. On the GPU the fixed-shape batch
// is captured once as a CUDA graph and replayed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nn/module.h"
#include "core/math_precision.h"
#include "runtime/tensor.h"

namespace aegis::certify {

// Which draw a sample belongs to; each phase has its own Philox purpose, so the n0 selection
// samples and the n estimation samples are independent (Alg. 2 requires fresh samples).
enum class SamplePhase : std::uint32_t { Selection = 0, Estimation = 1, Prediction = 2 };

struct SmoothingOptions {
  double sigma = 0.25;         // noise standard deviation in [0,1] pixel units; > 0, finite
  std::int64_t n0 = 100;       // CERTIFY's selection samples; ≥ 1
  std::int64_t n = 100000;     // CERTIFY's estimation samples, PREDICT's samples; ≥ 1
  double alpha = 0.001;        // failure probability; in (0, 1)
  std::int64_t batch = 1000;   // noisy rows per forward pass; ≥ 1
  std::uint64_t seed = 0;
  // The precision of the forward pass's matrix products and convolutions
  // (core/math_precision.h); anything but Fp32 needs a CUDA device (DeviceError elsewhere).
  // Tf32: TF32 tensor cores (fp32 range, 10-bit mantissa, fp32 accumulation). Bf16 / Fp16: the
  // operands of every matrix product and convolution are rounded to 16 bits, products are summed
  // in float32, activations between layers stay float32. The counts are then those of a slightly
  // different base classifier, which CERTIFY's guarantee covers as well: the certificate is about
  // the classifier that produced the counts. An fp16 value that leaves fp16's range (|v| > 65504)
  // is a NumericError, not a vote.
  MathPrecision precision = MathPrecision::Fp32;
  // GPU only: replay the fixed-shape batch (noise, forward, counts) as a captured CUDA graph; it
  // falls back to eager launches by itself when the model's forward pass cannot be captured.
  bool cuda_graphs = true;
};

struct Certificate {
  std::int64_t prediction = -1;  // ĉA, or -1 (abstain)
  double radius = 0.0;           // σ·Φ⁻¹(p̲A); 0 when abstaining
  double p_lower = 0.0;          // p̲A
  std::int64_t selected = -1;    // ĉA even when abstaining
  std::int64_t count = 0;        // nA among the n estimation samples
};

struct Prediction {
  std::int64_t prediction = -1;  // cA, or -1 (abstain)
  double p_value = 1.0;          // of the two-sided binomial test
  std::int64_t count_a = 0, count_b = 0;
};

// How the batches of a SmoothedClassifier ran, summed over its calls: replays of the captured
// CUDA graph, batches launched eagerly (every batch on the CPU; on the GPU the first, the last
// partial one, and all of them when capture failed), and why capture failed, if it did.
struct SamplingStats {
  std::int64_t graph_launches = 0;
  std::int64_t eager_batches = 0;
  std::string graph_failure;
  bool cuda_graph() const { return graph_launches > 0; }
};

// Called after every forward batch with the number of noisy rows it held (for progress).
using SampleCallback = std::function<void(std::int64_t rows)>;

class SmoothedClassifier {
 public:
  // `base` maps [N, input_shape...] in [0, 1] to logits [N, num_classes]; it is used in eval
  // mode without a tape (nn::FrozenScope) and must already live on `device`.
  SmoothedClassifier(nn::Module& base, Shape input_shape, std::int64_t num_classes, Device device);

  // Class counts of f on `num` noisy copies of each input: x [m, input_shape...] (any device),
  // ids [m] the inputs' key indices. Returns m·num_classes counts, row-major.
  std::vector<std::int64_t> sample_counts(const Tensor& x, const std::vector<std::uint64_t>& ids, std::int64_t num,
                                          SamplePhase phase, const SmoothingOptions& options,
                                          const SampleCallback& on_batch = {});

  // CERTIFY (Alg. 2) for every input of x [m, ...] with key indices ids [m].
  std::vector<Certificate> certify(const Tensor& x, const std::vector<std::uint64_t>& ids,
                                   const SmoothingOptions& options, const SampleCallback& on_batch = {});
  // PREDICT (Alg. 1) with options.n samples.
  std::vector<Prediction> predict(const Tensor& x, const std::vector<std::uint64_t>& ids,
                                  const SmoothingOptions& options, const SampleCallback& on_batch = {});

  std::int64_t num_classes() const { return m_num_classes; }
  const Shape& input_shape() const { return m_input_shape; }
  const SamplingStats& stats() const { return m_stats; }
  Device device() const { return m_device; }

 private:
  nn::Module& m_base;
  Shape m_input_shape;
  std::int64_t m_num_classes;
  Device m_device;
  SamplingStats m_stats;
};

// The largest σ whose float32 noise σ·z stays finite (|z| < 7, FLT_MAX / 7 ≈ 4.9e37).
constexpr double kMaxSmoothingSigma = 1e37;

// Validates options (InvalidArgument naming the bad value).
void check_smoothing_options(const SmoothingOptions& options);

}  // namespace aegis::certify
