// Learning-rate schedules as pure functions of the optimizer step: lr_at(t) is the learning rate
// for the (t+1)-th optimizer step (t = 0, 1, ...), which is what a PyTorch scheduler holds after
// t calls to scheduler.step(). Being stateless, a schedule can be evaluated out of order, resumed
// from any step and printed ahead of training. The closed forms follow torch.optim.lr_scheduler
// (StepLR, CosineAnnealingLR, OneCycleLR with anneal_strategy='cos', three_phase=False); where
// PyTorch is undefined or periodic past the end, these hold their final value (see each class).
// Host-only code: a schedule produces one float per step, no device work.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace aegis::nn {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // step ≥ 0 (InvalidArgument otherwise).
  virtual float lr_at(std::int64_t step) const = 0;
  virtual std::string describe() const = 0;
};

class ConstantLR : public LrSchedule {
 public:
  explicit ConstantLR(float lr);
  float lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  float m_lr;
};

// lr(t) = base_lr · gamma^⌊t / step_size⌋.  step_size ≥ 1, gamma > 0.
class StepLR : public LrSchedule {
 public:
  StepLR(float base_lr, std::int64_t step_size, float gamma = 0.1f);
  float lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  float m_base_lr;
  std::int64_t m_step_size;
  float m_gamma;
};

// lr(t) = η_min + (η_max − η_min)·(1 + cos(π·t/T))/2 for t ≤ T (Loshchilov & Hutter 2017, eq. 5
// without restarts), and η_min for t > T (PyTorch's closed form would rise again there).
// total_steps T ≥ 1, 0 ≤ eta_min ≤ base_lr.
class CosineAnnealing : public LrSchedule {
 public:
  CosineAnnealing(float base_lr, std::int64_t total_steps, float eta_min = 0.0f);
  float lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  float m_base_lr;
  std::int64_t m_total;
  float m_eta_min;
};

// The 1cycle policy (Smith & Topin 2019) as torch.optim.lr_scheduler.OneCycleLR computes it with
// cosine annealing and two phases:
//   initial = max_lr / div_factor,   final = initial / final_div_factor
//   phase 1: t ∈ [0, e1],      e1 = pct_start·T − 1, cosine from initial up to max_lr
//   phase 2: t ∈ (e1, T − 1],  cosine from max_lr down to final
//   cos_anneal(a, b, x) = b + (a − b)·(1 + cos(π x))/2, x = (t − phase start)/(phase end − start)
// so lr(0) = max_lr/25, lr(e1) = max_lr, lr(T−1) = max_lr/(25·10⁴) with the defaults. Steps ≥ T,
// where PyTorch raises or extrapolates past the cosine's minimum, hold lr(T−1). A phase of zero
// length (pct_start·T = 1, where PyTorch divides 0 by 0) yields its end value. Only the learning
// rate is scheduled: OneCycleLR's default momentum cycling (0.95 → 0.85 → 0.95) is not applied.
// total_steps T ≥ 2, pct_start ∈ [0, 1], div_factor > 0, final_div_factor > 0.
class OneCycle : public LrSchedule {
 public:
  OneCycle(float max_lr, std::int64_t total_steps, double pct_start = 0.3, double div_factor = 25.0,
           double final_div_factor = 1e4);
  float lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  float m_max_lr;
  std::int64_t m_total;
  double m_pct_start, m_div_factor, m_final_div_factor;
  double m_initial_lr, m_final_lr, m_phase1_end;
};

// The schedules a training run chooses by name.
//   Constant: ConstantLR(lr) (total_steps unused).
//   Step:     StepLR(lr, max(1, total_steps / 3), 0.1) — two decays by 10× over the run.
//   Cosine:   CosineAnnealing(lr, total_steps, 0).
//   OneCycle: OneCycle(lr, total_steps) with PyTorch's defaults (0.3, 25, 1e4); lr is the peak.
enum class ScheduleKind { Constant, Step, Cosine, OneCycle };
const char* schedule_name(ScheduleKind kind) noexcept;  // "constant", "step", "cosine", "onecycle"
ScheduleKind parse_schedule(const std::string& name);    // InvalidArgument naming the text otherwise
std::unique_ptr<LrSchedule> make_schedule(ScheduleKind kind, float lr, std::int64_t total_steps);

}  // namespace aegis::nn
