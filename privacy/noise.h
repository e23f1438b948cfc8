// The noise-and-update half of DP-SGD (Abadi et al., "Deep Learning with Differential Privacy",
// CCS 2016, Alg. 1): given each parameter's clipped gradient sum s = Σ_i clip_C(g_i) over a
// Poisson-sampled batch (privacy/sampling.h), release
//   g̃ = (s + c + σC·z) / (q·N),   z ~ N(0, I),
// and take one optimizer step with g̃. c is an optional auditing canary added before the noise.
// q·N is the EXPECTED batch size: dividing by the realized batch size would publish a
// data-dependent quantity without noise.
//
// DpOptimizer is an nn::Optimizer (SGD with momentum / weight decay / Nesterov, Adam, AdamW, with
// the PyTorch equations of kernels/optim.h) whose step() does, for every parameter:
//   - read the parameter's grad as the clipped sum s, placed there by the per-example clipping
//     code. A parameter WITHOUT a grad (no example reached it, or the Poisson batch was empty)
//     gets s = 0 written into its grad: its noise must be released anyway, or the set of
//     parameters that moved would itself leak which examples were sampled;
//   - Philox mode (secure = false): one fused kernel per parameter on the parameter's device
//     (kernels/dp_update.h). z is keyed (seed, kPurposeDpNoise, step, offset_p + i), where step is
//     the optimizer's noise step and offset_p = Σ_{q<p} numel(q), so no two parameters and no two
//     steps share a draw, and CPU and CUDA draw the same z;
//   - secure mode (secure = true): the grid discrete-Gaussian mechanism of privacy/secure_rng.h,
//     keyed by a 256-bit key drawn from the OS when the optimizer is constructed (seed is
//     ignored) and run on the HOST: a GPU parameter's s + c is copied to the CPU, noised there,
//     copied back, and the plain optimizer kernel runs on the device. Accountants must then use
//     effective_noise_multiplier(), which is slightly below σ (see secure_rng.h).
// Philox mode is for reproducible research runs: Philox is not a cryptographic generator, and its
// floating-point noise is open to Mironov's least-significant-bits attack (secure_rng.h). Use
// secure mode when the model is to be released.
//
// The noise step advances on every step() call — also when the call throws — so noise is never
// reused within one optimizer; a run resumed from a checkpoint with the same seed must set
// DpNoiseOptions::first_step to the number of steps already taken.
//
// Invalid options throw InvalidArgument naming the value: σ ≤ 0 or non-finite, C ≤ 0 or
// non-finite, q·N ≤ 0 or non-finite.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/optim.h"
#include "privacy/secure_rng.h"
#include "runtime/autograd.h"
#include "runtime/tensor.h"

namespace aegis::privacy {

struct DpNoiseOptions {
  double noise_multiplier = 0.0;     // σ > 0: noise std / clipping norm
  double max_grad_norm = 0.0;        // C > 0: the per-example clipping norm
  double expected_batch_size = 0.0;  // q·N > 0 (sampling rate × dataset size); divided by as a float
  std::uint64_t seed = 0;            // Philox seed; ignored when secure
  bool secure = false;               // OS-seeded cryptographic noise, grid mechanism, host only
  std::uint64_t first_step = 0;      // noise step of the first step() (resume: steps already taken)
};

// Throws InvalidArgument naming the first bad field.
void validate(const DpNoiseOptions& options);

// σ·C as a float, rounded up so that the noise is never below the promised σ·C.
float noise_stddev_f32(const DpNoiseOptions& options);

// The Philox-mode noisy gradient alone, for code that runs its own update:
//   out_i = (clipped_sum_i + σC·z_i) / (q·N),   z_i = philox::normal((seed, kPurposeDpNoise, step), offset + i)
// on clipped_sum's device, f32 of the same shape. Equal, element for element, to what
// DpOptimizer feeds its optimizer for a parameter with that offset at that step.
// options.secure must be false.
Tensor noisy_gradient(const Tensor& clipped_sum, const DpNoiseOptions& options, std::uint64_t step,
                      std::uint64_t offset = 0);

// The secure-mode noisy gradient alone: float(γ·(round(s/γ) + k)) / (q·N) with the grid
// mechanism of secure_rng.h, drawn from SecureStream(key, kPurposeDpNoise, step, stream_id·2^32 +
// chunk); computed on the host, returned on clipped_sum's device.
Tensor secure_noisy_gradient(const Tensor& clipped_sum, const DpNoiseOptions& options, const SecureKey& key,
                             std::uint64_t step, std::uint32_t stream_id);

class DpOptimizer : public nn::Optimizer {
 public:
  using UpdateObserver = std::function<void(std::size_t param_index, const Tensor& noisy_grad)>;

  DpOptimizer(std::vector<autograd::Var> params, nn::SgdOptions sgd, DpNoiseOptions noise);
  DpOptimizer(std::vector<autograd::Var> params, nn::AdamOptions adam, DpNoiseOptions noise);

  // One DP step over every parameter (see the header comment). Throws before modifying any
  // parameter if a grad or canary is invalid (shape, dtype, device, NaN/Inf) or, in secure
  // mode, too large for the grid.
  void step() override;
  // "DP-SGD(SGD(lr=…), noise_multiplier=…, max_grad_norm=…, expected_batch_size=…, secure=…)".
  std::string describe() const override;

  // Called after each parameter's update with g̃ exactly as the optimizer consumed it (on the
  // parameter's device), e.g. for privacy auditing. An empty function removes the observer.
  // Without an observer the Philox path never materializes g̃.
  void set_update_observer(UpdateObserver observer);
  // Changes σ and C for the following steps (adaptive clipping moves C every step). Validated as
  // in the constructor; the noise step counter is unaffected.
  void set_noise(double noise_multiplier, double max_grad_norm);
  // An extra gradient per parameter (undefined entries: none), added to the clipped sums of the
  // NEXT step() only, before the noise. Shapes must match the parameters; f32, finite; any device.
  void set_canary(std::vector<Tensor> canary);

  const DpNoiseOptions& noise_options() const { return m_noise; }
  // The Philox key step (or the secure stream's step) the next step() will use.
  std::uint64_t noise_step() const { return m_noise_step; }
  // First element index of parameter `index` in each step's draw.
  std::uint64_t noise_offset(std::size_t index) const { return m_offsets.at(index); }
  // The float σ·C the Philox kernels use (noise_stddev_f32).
  float noise_stddev() const { return m_noise_std; }
  // The noise multiplier to give an accountant: σ in Philox mode, σ_eff of secure_rng.h in
  // secure mode (over all parameter elements).
  double effective_noise_multiplier() const;

 protected:
  void update(std::size_t index, Tensor& value, const Tensor& grad) override;

 private:
  DpOptimizer(std::vector<autograd::Var> params, float lr, DpNoiseOptions noise);
  void update_philox(std::size_t index, Tensor& value, const Tensor& grad, const float* canary);
  void update_secure(std::size_t index, Tensor& value);
  // The plain optimizer's state and formula (nn/optim.h): exactly one is set.
  std::optional<nn::SgdRule> m_sgd;
  std::optional<nn::AdamRule> m_adam;
  DpNoiseOptions m_noise;
  float m_noise_std = 0.0f;
  float m_expected_batch = 1.0f;
  std::uint64_t m_noise_step = 0;
  std::vector<std::uint64_t> m_offsets;
  std::int64_t m_total_elements = 0;
  UpdateObserver m_observer;
  std::vector<Tensor> m_canary;       // set_canary, waiting for the next step
  std::vector<Tensor> m_step_canary;  // the canary of the step in progress, on each param's device
  std::unique_ptr<SecureKey> m_secure_key;
  SecureGrid m_secure_grid;
  std::vector<std::vector<float>> m_secure_inputs;  // s + c on the host, validated, per parameter
};

// SGD, Adam or AdamW with nn::make_optimizer's hyperparameters (nn::sgd_options,
// nn::adam_options; momentum for SGD only), wrapped in DP noise.
std::unique_ptr<DpOptimizer> make_dp_optimizer(nn::OptimizerKind kind, std::vector<autograd::Var> params, float lr,
                                               DpNoiseOptions noise, float momentum = 0.0f);
// The same parameters and hyperparameters (current lr included) as an nn::SGD or nn::Adam, with
// fresh optimizer state; any other optimizer type throws InvalidArgument.
std::unique_ptr<DpOptimizer> make_dp_optimizer(const nn::Optimizer& like, DpNoiseOptions noise);

}  // namespace aegis::privacy
