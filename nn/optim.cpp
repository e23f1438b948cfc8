// Optimizer bookkeeping on the host (validation, lazy state, per-parameter step counts, bias
// corrections in double); the per-element work is one fused kernel per parameter tensor,
// dispatched to the parameter's device (kernels/optim.h).
#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <unordered_set>

#include "core/named_enum.h"
#include "kernels/optim.h"
#include "kernels/optim_math.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::nn {

namespace {

void check_lr(float lr, const char* who) {
  AEGIS_CHECK(std::isfinite(lr) && lr > 0.0f, who << " learning rate " << lr << " must be positive and finite");
}
// [0, 1): momentum and the Adam betas.
void check_unit_interval(float v, const char* who, const char* name) {
  AEGIS_CHECK(std::isfinite(v) && v >= 0.0f && v < 1.0f, who << " " << name << " " << v << " must lie in [0, 1)");
}
void check_weight_decay(float wd, const char* who) {
  AEGIS_CHECK(std::isfinite(wd) && wd >= 0.0f, who << " weight_decay " << wd << " must be non-negative and finite");
}

// Returns `slot`, allocated as zeros like `like` when undefined and moved to like's device when it
// lives elsewhere (the parameter moved after the state was created).
Tensor& state_like(Tensor& slot, const Tensor& like) {
  if (!slot.defined()) {
    slot = Tensor::zeros_like(like);
  } else if (slot.device() != like.device()) {
    slot = slot.to(like.device());
  }
  return slot;
}

std::string param_label(std::size_t index, const Tensor& value) {
  std::ostringstream os;
  os << "gradient of parameter " << index << " (" << value.describe() << ")";
  return os.str();
}

}  // namespace

// ---- Optimizer -------------------------------------------------------------------------------

Optimizer::Optimizer(std::vector<autograd::Var> params, float lr) : m_params(std::move(params)), m_lr(lr) {
  check_lr(lr, "optimizer");
  AEGIS_CHECK(!m_params.empty(), "optimizer got an empty parameter list");
  std::unordered_set<const autograd::VarState*> seen;
  for (std::size_t i = 0; i < m_params.size(); ++i) {
    AEGIS_CHECK(m_params[i].defined(), "optimizer parameter " << i << " is an undefined Var");
    // A repeated Var would be updated twice per step.
    AEGIS_CHECK(seen.insert(m_params[i].state()).second,
                "optimizer parameter " << i << " (" << m_params[i].value().describe() << ") appears more than once");
  }
}

void Optimizer::set_lr(float lr) {
  AEGIS_CHECK(std::isfinite(lr) && lr >= 0.0f, "learning rate " << lr << " must be non-negative and finite");
  m_lr = lr;
}

void Optimizer::zero_grad() {
  for (autograd::Var& p : m_params) p.zero_grad();
}

void Optimizer::step() {
  // Validate everything first, so that a bad gradient anywhere leaves every parameter as it was.
  // The non-finite counts of all gradients on one device come back with one copy (one host
  // synchronization per step on a GPU, not one per parameter).
  std::vector<std::size_t> checked;
  std::vector<const Tensor*> grads;
  for (std::size_t i = 0; i < m_params.size(); ++i) {
    const autograd::Var& p = m_params[i];
    if (!p.has_grad()) continue;
    const Tensor& value = p.value();
    const Tensor& grad = p.grad();
    const std::string label = param_label(i, value);
    check_dtype(value, DType::F32, label.c_str());
    check_dtype(grad, DType::F32, label.c_str());
    check_shape(grad, value.shape(), label.c_str());
    check_same_device(value, grad, label.c_str());
    checked.push_back(i);
    grads.push_back(&grad);
  }
  // Parameters may live on several devices: one batch of counts per device, in order.
  std::vector<std::int64_t> bad(grads.size(), 0);
  for (std::size_t first = 0; first < grads.size();) {
    std::size_t last = first;
    std::vector<const Tensor*> same;
    while (last < grads.size() && grads[last]->device() == grads[first]->device()) same.push_back(grads[last++]);
    const std::vector<std::int64_t> counts = ops::count_nonfinite_each(same);
    std::copy(counts.begin(), counts.end(), bad.begin() + static_cast<std::ptrdiff_t>(first));
    first = last;
  }
  for (std::size_t j = 0; j < grads.size(); ++j)
    if (bad[j])
      AEGIS_THROW(NumericError, param_label(checked[j], m_params[checked[j]].value())
                                    << " contains " << bad[j] << " NaN/Inf value(s) out of " << grads[j]->numel()
                                    << "; no parameter was updated");
  for (std::size_t i = 0; i < m_params.size(); ++i) {
    autograd::Var& p = m_params[i];
    if (!p.has_grad()) continue;
    update(i, p.mutable_value(), p.grad());
  }
  ++m_steps;
}

// ---- SGD -------------------------------------------------------------------------------------

SgdRule::SgdRule(SgdOptions opt, std::size_t num_params) : m_opt(opt), m_momentum_buf(num_params) {
  check_unit_interval(opt.momentum, "SGD", "momentum");
  check_weight_decay(opt.weight_decay, "SGD");
  AEGIS_CHECK(!opt.nesterov || opt.momentum > 0.0f,
              "SGD nesterov=true requires momentum > 0 (got momentum " << opt.momentum << ")");
}

kernels::SgdUpdate SgdRule::next(std::size_t index, float lr, const Tensor& value, float** momentum_buf) {
  kernels::SgdUpdate u;
  u.lr = lr;
  u.momentum = m_opt.momentum;
  u.weight_decay = m_opt.weight_decay;
  u.nesterov = m_opt.nesterov;
  *momentum_buf = nullptr;
  if (m_opt.momentum != 0.0f) {
    Tensor& slot = m_momentum_buf.at(index);
    u.first_step = !slot.defined();
    *momentum_buf = state_like(slot, value).data<float>();
  }
  return u;
}

std::string SgdRule::describe(float lr) const {
  std::ostringstream os;
  os << "SGD(lr=" << lr << ", momentum=" << m_opt.momentum << ", weight_decay=" << m_opt.weight_decay
     << ", nesterov=" << (m_opt.nesterov ? "true" : "false") << ")";
  return os.str();
}

SGD::SGD(std::vector<autograd::Var> params, SgdOptions opt)
    : Optimizer(std::move(params), opt.lr), m_rule(opt, parameters().size()) {}

SgdOptions SGD::options() const {
  SgdOptions o = m_rule.options();
  o.lr = lr();
  return o;
}

std::string SGD::describe() const {
  return m_rule.describe(lr());
}

void SgdRule::apply(std::size_t index, float lr, Tensor& value, const Tensor& grad) {
  float* buf = nullptr;
  const kernels::SgdUpdate u = next(index, lr, value, &buf);
  AEGIS_DISPATCH(value.device(), sgd_step(u, value.data<float>(), grad.data<float>(), buf, value.numel()));
}

void SGD::update(std::size_t index, Tensor& value, const Tensor& grad) {
  m_rule.apply(index, lr(), value, grad);
}

// ---- Adam / AdamW ----------------------------------------------------------------------------

AdamRule::AdamRule(AdamOptions opt, std::size_t num_params) : m_opt(opt), m_state(num_params) {
  const char* who = opt.decoupled ? "AdamW" : "Adam";
  check_unit_interval(opt.beta1, who, "beta1");
  check_unit_interval(opt.beta2, who, "beta2");
  AEGIS_CHECK(std::isfinite(opt.eps) && opt.eps > 0.0f, who << " eps " << opt.eps << " must be positive and finite");
  check_weight_decay(opt.weight_decay, who);
}

kernels::AdamUpdate AdamRule::next(std::size_t index, float lr, const Tensor& value, float** exp_avg,
                                   float** exp_avg_sq) {
  State& s = m_state.at(index);
  s.step += 1;
  *exp_avg = state_like(s.exp_avg, value).data<float>();
  *exp_avg_sq = state_like(s.exp_avg_sq, value).data<float>();
  return kernels::adam_update_for_step(lr, m_opt.beta1, m_opt.beta2, m_opt.eps, m_opt.weight_decay, m_opt.decoupled,
                                       s.step);
}

std::string AdamRule::describe(float lr) const {
  std::ostringstream os;
  os << (m_opt.decoupled ? "AdamW" : "Adam") << "(lr=" << lr << ", betas=(" << m_opt.beta1 << ", " << m_opt.beta2
     << "), eps=" << m_opt.eps << ", weight_decay=" << m_opt.weight_decay << ")";
  return os.str();
}

Adam::Adam(std::vector<autograd::Var> params, AdamOptions opt)
    : Optimizer(std::move(params), opt.lr), m_rule(opt, parameters().size()) {}

AdamOptions Adam::options() const {
  AdamOptions o = m_rule.options();
  o.lr = lr();
  return o;
}

std::string Adam::describe() const {
  return m_rule.describe(lr());
}

void AdamRule::apply(std::size_t index, float lr, Tensor& value, const Tensor& grad) {
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  const kernels::AdamUpdate u = next(index, lr, value, &exp_avg, &exp_avg_sq);
  AEGIS_DISPATCH(value.device(),
                 adam_step(u, value.data<float>(), grad.data<float>(), exp_avg, exp_avg_sq, value.numel()));
}

void Adam::update(std::size_t index, Tensor& value, const Tensor& grad) {
  m_rule.apply(index, lr(), value, grad);
}

// ---- factory ---------------------------------------------------------------------------------

const char* optimizer_name(OptimizerKind kind) noexcept {
  switch (kind) {
    case OptimizerKind::Sgd:
      return "sgd";
    case OptimizerKind::Adam:
      return "adam";
    case OptimizerKind::AdamW:
      return "adamw";
  }
  return "?";
}

OptimizerKind parse_optimizer(const std::string& name) {
  return parse_named(name, {OptimizerKind::Sgd, OptimizerKind::Adam, OptimizerKind::AdamW}, optimizer_name,
                     "optimizer");
}

void check_optimizer_choice(OptimizerKind kind, float momentum) {
  AEGIS_CHECK(momentum == 0.0f || kind == OptimizerKind::Sgd,
              "momentum " << momentum << " applies to sgd only (optimizer '" << optimizer_name(kind) << "')");
}

SgdOptions sgd_options(float lr, float momentum) {
  SgdOptions o;
  o.lr = lr;
  o.momentum = momentum;
  return o;
}

AdamOptions adam_options(OptimizerKind kind, float lr) {
  AEGIS_CHECK(kind != OptimizerKind::Sgd, "adam_options: sgd is not an Adam optimizer");
  AdamOptions o;
  o.lr = lr;
  if (kind == OptimizerKind::AdamW) {
    o.decoupled = true;
    o.weight_decay = 1e-2f;
  }
  return o;
}

std::unique_ptr<Optimizer> make_optimizer(OptimizerKind kind, std::vector<autograd::Var> params, float lr,
                                          float momentum) {
  check_optimizer_choice(kind, momentum);
  if (kind == OptimizerKind::Sgd) return std::make_unique<SGD>(std::move(params), sgd_options(lr, momentum));
  return std::make_unique<Adam>(std::move(params), adam_options(kind, lr));
}

}  // namespace aegis::nn
