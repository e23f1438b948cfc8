#include "privacy/dp_stepper.h"

#include <cmath>

#include "core/error.h"
#include "nn/functional.h"
#include "runtime/autograd.h"

namespace aegis::privacy {

DpStepper::DpStepper(nn::Module& model, const DpStepperOptions& options) : m_model(model), m_options(options) {
  const DpStepperOptions& o = options;
  AEGIS_CHECK(std::isfinite(o.noise_multiplier) && o.noise_multiplier > 0.0,
              "noise multiplier " << o.noise_multiplier << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(o.max_grad_norm) && o.max_grad_norm > 0.0,
              "max_grad_norm (clipping norm C) " << o.max_grad_norm << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(o.sampling_rate) && o.sampling_rate > 0.0 && o.sampling_rate <= 1.0,
              "sampling rate " << o.sampling_rate << " must lie in (0, 1]");
  AEGIS_CHECK(o.dataset_size >= 1, "dataset size " << o.dataset_size << " must be at least 1");
  check_delta(o.delta);
  AEGIS_CHECK(std::isfinite(o.lr) && o.lr > 0.0f, "learning rate " << o.lr << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(o.momentum) && o.momentum >= 0.0f && o.momentum < 1.0f,
              "momentum " << o.momentum << " must lie in [0, 1)");

  DpNoiseOptions noise;
  noise.noise_multiplier = o.noise_multiplier;
  noise.max_grad_norm = o.max_grad_norm;
  noise.expected_batch_size = o.sampling_rate * static_cast<double>(o.dataset_size);
  noise.seed = o.seed;
  validate(noise);
  m_clip.max_grad_norm = static_cast<float>(o.max_grad_norm);

  m_model.train(true);
  m_model.set_requires_grad(true);
  enable_per_example_capture(m_model, true);
  m_optimizer = make_dp_optimizer(o.optimizer, m_model.parameters(), o.lr, noise, o.momentum);
}

DpStepper::~DpStepper() { enable_per_example_capture(m_model, false); }

DpStepResult DpStepper::step(const Tensor& x, const Tensor& labels) {
  AEGIS_CHECK_AS(ShapeError, x.dim() >= 2, "DP step: images must have a batch dimension, got " << shape_str(x.shape()));
  AEGIS_CHECK_AS(ShapeError, labels.dim() == 1 && labels.numel() == x.shape()[0],
                 "DP step: " << x.shape()[0] << " images but labels of shape " << shape_str(labels.shape()));
  const Device device = m_model.parameters().front().device();
  DpStepResult r;
  r.batch_size = x.shape()[0];
  m_optimizer->zero_grad();
  if (r.batch_size > 0) {
    const Tensor images = x.to(device);
    const Tensor y = labels.to(device);
    nn::Var logits = m_model.forward(nn::Var(images, false));
    // The summed loss: row i of every captured output gradient is example i's own.
    nn::Var loss = nn::F::cross_entropy(logits, y, nn::Reduction::Sum);
    autograd::backward(loss);
    const ClipStats st = clip_and_accumulate(m_model, m_clip);
    r.clipped = st.clipped;
    const double total = loss.value().item();
    AEGIS_CHECK_AS(NumericError, std::isfinite(total),
                   "DP step " << m_steps + 1 << ": the loss became " << total << " (learning rate may be too large)");
    r.loss = total / static_cast<double>(r.batch_size);
  }
  m_optimizer->step();
  clear_captures(m_model);
  r.step = ++m_steps;
  return r;
}

PrivacyLedger DpStepper::ledger() const {
  PrivacyLedger l;
  if (m_steps > 0) l.phases.push_back({m_optimizer->effective_noise_multiplier(), m_options.sampling_rate, m_steps});
  l.max_grad_norm = m_options.max_grad_norm;
  l.delta = m_options.delta;
  l.accountant = m_options.accountant;
  l.epsilon = l.phases.empty() ? 0.0 : compute_epsilon(m_options.accountant, l.phases, m_options.delta).epsilon;
  return l;
}

}  // namespace aegis::privacy
