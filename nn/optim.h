// Optimizers over a list of parameter Vars: SGD (momentum, Nesterov, L2 weight decay) and Adam /
// AdamW, with PyTorch's update equations (torch.optim.SGD, Adam, AdamW; written out in
// kernels/optim.h). step() first checks every gradient — shape, dtype, device and finiteness — and
// throws before any parameter or state is modified, then updates each parameter that has a
// gradient (parameters without one are skipped, as in PyTorch) with one fused kernel on that
// parameter's device. Optimizer state (momentum buffer, Adam moments) is allocated lazily on the
// parameter's device and follows the parameter if it is moved. Hyperparameters are validated at
// construction and throw InvalidArgument naming the bad value.
//
// A learning-rate schedule (nn/schedule.h) drives an optimizer with
//   opt.set_lr(schedule.lr_at(opt.steps()));  opt.step();
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/optim.h"
#include "runtime/autograd.h"

namespace aegis::nn {

class Optimizer {
 public:
  // params: non-empty, no undefined or repeated Vars. lr > 0 and finite.
  Optimizer(std::vector<autograd::Var> params, float lr);
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  virtual ~Optimizer() = default;

  // One update of every parameter that has a gradient. Throws NumericError (naming the
  // parameter and the count) if any gradient holds NaN/Inf, ShapeError if a gradient does not
  // match its parameter; in both cases nothing has been modified.
  virtual void step();
  // Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();
  float lr() const { return m_lr; }
  // lr ≥ 0 and finite: a schedule may legitimately reach 0 (cosine annealing to eta_min = 0).
  void set_lr(float lr);
  // Number of completed step() calls.
  std::int64_t steps() const { return m_steps; }
  const std::vector<autograd::Var>& parameters() const { return m_params; }
  // "SGD(lr=0.1, momentum=0.9, weight_decay=0, nesterov=false)", for logs.
  virtual std::string describe() const = 0;

 protected:
  // Updates parameter `index` in place; value and grad are validated float32 tensors of the
  // same shape on the same device.
  virtual void update(std::size_t index, Tensor& value, const Tensor& grad) = 0;

 private:
  std::vector<autograd::Var> m_params;
  float m_lr;
  std::int64_t m_steps = 0;
};

// torch.optim.SGD defaults (dampening is fixed at 0).
struct SgdOptions {
  float lr = 1e-3f;
  float momentum = 0.0f;      // in [0, 1)
  float weight_decay = 0.0f;  // ≥ 0, added to the gradient as weight_decay · p
  bool nesterov = false;      // requires momentum > 0
};

// The state and update formula of an optimizer, apart from where the gradient comes from: nn::SGD
// and nn::Adam give their kernels (kernels/optim.h) the gradient, privacy::DpOptimizer gives its
// fused kernels (kernels/dp_update.h) the clipped sum to noise first. Both hold the state in a
// rule and both kernels run the per-element formula of kernels/optim_math.h, so a DP step is the
// plain step on the noisy gradient. The constructors validate the hyperparameters (not lr, which
// the optimizer owns) and throw InvalidArgument naming the bad value.
class SgdRule {
 public:
  SgdRule(SgdOptions opt, std::size_t num_params);
  const SgdOptions& options() const { return m_opt; }
  // The kernel arguments of the next update of parameter `index` (value: its current value) at
  // rate lr, and in *momentum_buf its momentum buffer: zeros like `value` when first used, on
  // value's device, nullptr without momentum. PyTorch starts the buffer at the gradient: the
  // kernel overwrites it when first_step is set.
  kernels::SgdUpdate next(std::size_t index, float lr, const Tensor& value, float** momentum_buf);
  // next() and the plain kernel: value ← the SGD step on `grad` (validated like value).
  void apply(std::size_t index, float lr, Tensor& value, const Tensor& grad);
  std::string describe(float lr) const;  // "SGD(lr=0.1, momentum=0.9, weight_decay=0, nesterov=false)"

 private:
  SgdOptions m_opt;
  std::vector<Tensor> m_momentum_buf;  // one per parameter, undefined until its first update
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<autograd::Var> params, SgdOptions opt);
  SgdOptions options() const;  // with the current lr
  std::string describe() const override;

 protected:
  void update(std::size_t index, Tensor& value, const Tensor& grad) override;

 private:
  SgdRule m_rule;
};

// torch.optim.Adam defaults; decoupled = true gives torch.optim.AdamW (whose own default
// weight_decay is 1e-2, see make_optimizer).
struct AdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;         // in [0, 1)
  float beta2 = 0.999f;       // in [0, 1)
  float eps = 1e-8f;          // > 0
  float weight_decay = 0.0f;  // ≥ 0
  bool decoupled = false;     // true = AdamW: p ← p·(1 − lr·wd); false = L2: g ← g + wd·p
};

class AdamRule {
 public:
  AdamRule(AdamOptions opt, std::size_t num_params);
  const AdamOptions& options() const { return m_opt; }
  // The kernel arguments of the next update of parameter `index` at rate lr (its step count t
  // advances: per parameter, as in PyTorch, bias correction counts that parameter's own updates),
  // and its moments in *exp_avg, *exp_avg_sq (zeros like `value` when first used).
  kernels::AdamUpdate next(std::size_t index, float lr, const Tensor& value, float** exp_avg, float** exp_avg_sq);
  // next() and the plain kernel: value ← the Adam step on `grad` (validated like value).
  void apply(std::size_t index, float lr, Tensor& value, const Tensor& grad);
  std::string describe(float lr) const;  // "Adam(lr=…, betas=(…, …), eps=…, weight_decay=…)" or AdamW

 private:
  struct State {
    Tensor exp_avg, exp_avg_sq;
    std::int64_t step = 0;
  };
  AdamOptions m_opt;
  std::vector<State> m_state;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<autograd::Var> params, AdamOptions opt);
  AdamOptions options() const;  // with the current lr
  std::string describe() const override;

 protected:
  void update(std::size_t index, Tensor& value, const Tensor& grad) override;

 private:
  AdamRule m_rule;
};

// The optimizers a training run chooses by name.
//   Sgd:   SGD with PyTorch's defaults — momentum 0, weight_decay 0, no Nesterov.
//   Adam:  Adam, betas (0.9, 0.999), eps 1e-8, weight_decay 0.
//   AdamW: AdamW, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2 (torch.optim.AdamW's default).
enum class OptimizerKind { Sgd, Adam, AdamW };
const char* optimizer_name(OptimizerKind kind) noexcept;  // "sgd", "adam", "adamw"
OptimizerKind parse_optimizer(const std::string& name);   // InvalidArgument naming the text otherwise

// The hyperparameters of each kind, shared by make_optimizer and the DP optimizer. `momentum`
// (heavy ball, PyTorch's convention) applies to Sgd only: non-zero for another kind is an
// InvalidArgument (check_optimizer_choice).
void check_optimizer_choice(OptimizerKind kind, float momentum);
SgdOptions sgd_options(float lr, float momentum);
AdamOptions adam_options(OptimizerKind kind, float lr);  // Adam or AdamW
std::unique_ptr<Optimizer> make_optimizer(OptimizerKind kind, std::vector<autograd::Var> params, float lr,
                                          float momentum = 0.0f);

}  // namespace aegis::nn
