// DP noise and the DP optimizer step (privacy/noise.h): host bookkeeping (validation, per-
// parameter noise offsets, the noise step, optimizer state, the single-use canary); the element
// work is one fused kernel per parameter (kernels/dp_update.h) or, in secure mode, the host grid
// mechanism (privacy/secure_rng.h) followed by the plain optimizer kernel (kernels/optim.h).
#include "privacy/noise.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "core/philox.h"
#include "kernels/dp_update.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::privacy {

namespace {

std::string param_label(const char* what, std::size_t index, const Tensor& value) {
  std::ostringstream os;
  os << what << " of parameter " << index << " (" << value.describe() << ")";
  return os.str();
}

// s + c on the host, as the float sum the Philox kernel forms (s + c, then + noise).
std::vector<float> host_sum(const Tensor& grad, const Tensor* canary) {
  std::vector<float> v = grad.to(Device::cpu()).to_vector<float>();
  if (canary) {
    const std::vector<float> c = canary->to(Device::cpu()).to_vector<float>();
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = v[i] + c[i];
  }
  return v;
}

}  // namespace

void validate(const DpNoiseOptions& o) {
  AEGIS_CHECK(std::isfinite(o.noise_multiplier) && o.noise_multiplier > 0.0,
              "DP noise_multiplier " << o.noise_multiplier << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(o.max_grad_norm) && o.max_grad_norm > 0.0,
              "DP max_grad_norm " << o.max_grad_norm << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(o.expected_batch_size) && o.expected_batch_size > 0.0,
              "DP expected_batch_size " << o.expected_batch_size << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(noise_stddev_f32(o)),
              "DP noise std noise_multiplier·max_grad_norm = " << o.noise_multiplier * o.max_grad_norm
                                                               << " does not fit in a float");
  AEGIS_CHECK(
      static_cast<float>(o.expected_batch_size) > 0.0f && std::isfinite(static_cast<float>(o.expected_batch_size)),
      "DP expected_batch_size " << o.expected_batch_size << " does not fit in a float");
}

float noise_stddev_f32(const DpNoiseOptions& o) {
  const double std_dev = o.noise_multiplier * o.max_grad_norm;
  float f = static_cast<float>(std_dev);
  if (static_cast<double>(f) < std_dev) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

Tensor noisy_gradient(const Tensor& clipped_sum, const DpNoiseOptions& options, std::uint64_t step,
                      std::uint64_t offset) {
  validate(options);
  AEGIS_CHECK(!options.secure, "noisy_gradient draws Philox noise; use secure_noisy_gradient in secure mode");
  check_dtype(clipped_sum, DType::F32, "clipped gradient sum");
  kernels::DpNoise d;
  AEGIS_CHECK(step <= philox::kMaxKeyedStep, "noisy_gradient: step " << step << " exceeds " << philox::kMaxKeyedStep);
  d.key = philox::step_key(options.seed, philox::kPurposeDpNoise, step);
  d.offset = offset;
  d.noise_std = noise_stddev_f32(options);
  d.expected_batch_size = static_cast<float>(options.expected_batch_size);
  Tensor out = Tensor::empty_like(clipped_sum);
  AEGIS_DISPATCH(clipped_sum.device(),
                 dp_noisy_gradient_fill(d, clipped_sum.data<float>(), nullptr, out.data<float>(), out.numel()));
  return out;
}

Tensor secure_noisy_gradient(const Tensor& clipped_sum, const DpNoiseOptions& options, const SecureKey& key,
                             std::uint64_t step, std::uint32_t stream_id) {
  validate(options);
  check_dtype(clipped_sum, DType::F32, "clipped gradient sum");
  const SecureGrid grid = SecureGrid::make(options.noise_multiplier, options.max_grad_norm);
  std::vector<float> v = host_sum(clipped_sum, nullptr);
  secure_noisy_values(v.data(), v.data(), static_cast<std::int64_t>(v.size()), grid, key, philox::kPurposeDpNoise, step,
                      stream_id);
  const float expected = static_cast<float>(options.expected_batch_size);
  for (float& x : v) x = x / expected;
  return Tensor::from_vector(v, clipped_sum.shape()).to(clipped_sum.device());
}

// ---- DpOptimizer -----------------------------------------------------------------------------

DpOptimizer::DpOptimizer(std::vector<autograd::Var> params, float lr, DpNoiseOptions noise)
    : nn::Optimizer(std::move(params), lr), m_noise(noise) {
  validate(noise);
  m_noise_std = noise_stddev_f32(noise);
  m_expected_batch = static_cast<float>(noise.expected_batch_size);
  m_noise_step = noise.first_step;
  const std::size_t n = parameters().size();
  m_offsets.resize(n);
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < n; ++i) {
    m_offsets[i] = offset;
    offset += static_cast<std::uint64_t>(parameters()[i].value().numel());
  }
  m_total_elements = static_cast<std::int64_t>(offset);
  if (noise.secure) {
    m_secure_key = std::make_unique<SecureKey>(SecureKey::from_os());
    m_secure_grid = SecureGrid::make(noise.noise_multiplier, noise.max_grad_norm);
    AEGIS_CHECK(n <= std::numeric_limits<std::uint32_t>::max(), "secure mode supports at most 2^32 parameters");
  }
}

DpOptimizer::DpOptimizer(std::vector<autograd::Var> params, nn::SgdOptions sgd, DpNoiseOptions noise)
    : DpOptimizer(std::move(params), sgd.lr, noise) {
  m_sgd.emplace(sgd, parameters().size());
}

DpOptimizer::DpOptimizer(std::vector<autograd::Var> params, nn::AdamOptions adam, DpNoiseOptions noise)
    : DpOptimizer(std::move(params), adam.lr, noise) {
  m_adam.emplace(adam, parameters().size());
}

void DpOptimizer::set_noise(double noise_multiplier, double max_grad_norm) {
  DpNoiseOptions next = m_noise;
  next.noise_multiplier = noise_multiplier;
  next.max_grad_norm = max_grad_norm;
  validate(next);
  m_noise = next;
  m_noise_std = noise_stddev_f32(next);
  if (next.secure) m_secure_grid = SecureGrid::make(next.noise_multiplier, next.max_grad_norm);
}

double DpOptimizer::effective_noise_multiplier() const {
  return m_noise.secure ? m_secure_grid.effective_noise_multiplier(m_total_elements) : m_noise.noise_multiplier;
}

std::string DpOptimizer::describe() const {
  std::ostringstream os;
  os << "DP-" << (m_adam ? m_adam->describe(lr()) : m_sgd->describe(lr()));
  os << " with noise_multiplier=" << m_noise.noise_multiplier << ", max_grad_norm=" << m_noise.max_grad_norm
     << ", expected_batch_size=" << m_noise.expected_batch_size << ", secure=" << (m_noise.secure ? "true" : "false");
  return os.str();
}

void DpOptimizer::set_update_observer(UpdateObserver observer) {
  m_observer = std::move(observer);
}

void DpOptimizer::set_canary(std::vector<Tensor> canary) {
  AEGIS_CHECK(canary.size() == parameters().size(),
              "canary has " << canary.size() << " entries for " << parameters().size() << " parameters");
  m_canary = std::move(canary);
}

void DpOptimizer::step() {
  AEGIS_CHECK_AS(Error, m_noise_step < philox::kMaxKeyedStep,
                 "DP noise step counter exhausted at " << m_noise_step << "; a further step would reuse noise");
  // The canary belongs to this step whatever happens to it.
  std::vector<Tensor> canary = std::move(m_canary);
  m_canary.clear();
  m_step_canary.assign(parameters().size(), Tensor());
  m_secure_inputs.clear();
  // Whatever happens below, this step's noise indices are spent.
  struct AdvanceStep {
    DpOptimizer* self;
    ~AdvanceStep() {
      ++self->m_noise_step;
      self->m_step_canary.clear();
      self->m_secure_inputs.clear();
    }
  } advance{this};

  for (std::size_t i = 0; i < parameters().size(); ++i) {
    const autograd::Var& p = parameters()[i];
    const Tensor& value = p.value();
    if (!p.has_grad()) p.accumulate_grad_owned(Tensor::zeros_like(value));
    const std::string label = param_label("gradient", i, value);
    check_dtype(value, DType::F32, label.c_str());
    check_dtype(p.grad(), DType::F32, label.c_str());
    check_shape(p.grad(), value.shape(), label.c_str());
    check_same_device(value, p.grad(), label.c_str());
    if (!canary.empty() && canary[i].defined()) {
      const std::string clabel = param_label("canary", i, value);
      check_dtype(canary[i], DType::F32, clabel.c_str());
      check_shape(canary[i], value.shape(), clabel.c_str());
      const std::int64_t bad = ops::count_nonfinite(canary[i]);
      if (bad)
        AEGIS_THROW(NumericError, clabel << " contains " << bad << " NaN/Inf value(s); no parameter was updated");
      m_step_canary[i] = canary[i].to(value.device());
    }
  }
  if (m_noise.secure) {
    // Range-check every s + c before any parameter moves (the grid mechanism's input bound).
    const double max_abs = m_secure_grid.max_abs_input();
    for (std::size_t i = 0; i < parameters().size(); ++i) {
      const Tensor* c = m_step_canary[i].defined() ? &m_step_canary[i] : nullptr;
      m_secure_inputs.push_back(host_sum(parameters()[i].grad(), c));
      for (float v : m_secure_inputs.back())
        if (!(std::fabs(static_cast<double>(v)) < max_abs))
          AEGIS_THROW(NumericError, param_label("gradient + canary", i, parameters()[i].value())
                                        << " holds " << v << ", non-finite or beyond the secure grid's range ±"
                                        << max_abs << "; no parameter was updated");
    }
  }
  nn::Optimizer::step();
}

void DpOptimizer::update(std::size_t index, Tensor& value, const Tensor& grad) {
  if (m_noise.secure) {
    update_secure(index, value);
  } else {
    const Tensor& c = m_step_canary[index];
    update_philox(index, value, grad, c.defined() ? c.data<float>() : nullptr);
  }
}

void DpOptimizer::update_philox(std::size_t index, Tensor& value, const Tensor& grad, const float* canary) {
  kernels::DpNoise d;
  d.key = philox::step_key(m_noise.seed, philox::kPurposeDpNoise, m_noise_step);
  d.offset = m_offsets[index];
  d.noise_std = m_noise_std;
  d.expected_batch_size = m_expected_batch;
  Tensor noisy;
  float* noisy_ptr = nullptr;
  if (m_observer) {
    noisy = Tensor::empty_like(value);
    noisy_ptr = noisy.data<float>();
  }
  const std::int64_t n = value.numel();
  if (m_adam) {
    float* m = nullptr;
    float* v = nullptr;
    const kernels::AdamUpdate u = m_adam->next(index, lr(), value, &m, &v);
    AEGIS_DISPATCH(value.device(),
                   dp_adam_step(d, u, value.data<float>(), grad.data<float>(), canary, m, v, noisy_ptr, n));
  } else {
    float* buf = nullptr;
    const kernels::SgdUpdate u = m_sgd->next(index, lr(), value, &buf);
    AEGIS_DISPATCH(value.device(),
                   dp_sgd_step(d, u, value.data<float>(), grad.data<float>(), canary, buf, noisy_ptr, n));
  }
  if (m_observer) m_observer(index, noisy);
}

void DpOptimizer::update_secure(std::size_t index, Tensor& value) {
  std::vector<float>& v = m_secure_inputs[index];
  secure_noisy_values(v.data(), v.data(), static_cast<std::int64_t>(v.size()), m_secure_grid, *m_secure_key,
                      philox::kPurposeDpNoise, m_noise_step, static_cast<std::uint32_t>(index));
  for (float& x : v) x = x / m_expected_batch;
  const Tensor noisy = Tensor::from_vector(v, value.shape()).to(value.device());
  if (m_adam)
    m_adam->apply(index, lr(), value, noisy);
  else
    m_sgd->apply(index, lr(), value, noisy);
  if (m_observer) m_observer(index, noisy);
}

// ---- factories -------------------------------------------------------------------------------

std::unique_ptr<DpOptimizer> make_dp_optimizer(nn::OptimizerKind kind, std::vector<autograd::Var> params, float lr,
                                               DpNoiseOptions noise, float momentum) {
  nn::check_optimizer_choice(kind, momentum);
  if (kind == nn::OptimizerKind::Sgd)
    return std::make_unique<DpOptimizer>(std::move(params), nn::sgd_options(lr, momentum), noise);
  return std::make_unique<DpOptimizer>(std::move(params), nn::adam_options(kind, lr), noise);
}

std::unique_ptr<DpOptimizer> make_dp_optimizer(const nn::Optimizer& like, DpNoiseOptions noise) {
  if (const auto* sgd = dynamic_cast<const nn::SGD*>(&like))
    return std::make_unique<DpOptimizer>(like.parameters(), sgd->options(), noise);
  if (const auto* adam = dynamic_cast<const nn::Adam*>(&like))
    return std::make_unique<DpOptimizer>(like.parameters(), adam->options(), noise);
  AEGIS_THROW(InvalidArgument,
              "make_dp_optimizer: cannot wrap " << like.describe() << " (expected SGD, Adam or AdamW)");
}

}  // namespace aegis::privacy
