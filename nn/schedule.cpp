// Closed forms of the learning-rate schedules declared in nn/schedule.h, evaluated in double and
// rounded once to float.
#include "nn/schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/named_enum.h"

namespace aegis::nn {

namespace {

constexpr double kPi = 3.14159265358979323846;

void check_base_lr(float lr, const char* who) {
  AEGIS_CHECK(std::isfinite(lr) && lr > 0.0f, who << " learning rate " << lr << " must be positive and finite");
}
void check_step(std::int64_t step, const char* who) {
  AEGIS_CHECK(step >= 0, who << ": step " << step << " must be non-negative");
}
// b + (a − b)·(1 + cos(π x))/2: a at x = 0, b at x = 1.
double cos_anneal(double a, double b, double x) {
  return b + (a - b) * 0.5 * (1.0 + std::cos(kPi * x));
}

}  // namespace

// ---- constant --------------------------------------------------------------------------------

ConstantLR::ConstantLR(float lr) : m_lr(lr) {
  check_base_lr(lr, "ConstantLR");
}
float ConstantLR::lr_at(std::int64_t step) const {
  check_step(step, "ConstantLR");
  return m_lr;
}
std::string ConstantLR::describe() const {
  std::ostringstream os;
  os << "ConstantLR(lr=" << m_lr << ")";
  return os.str();
}

// ---- step decay ------------------------------------------------------------------------------

StepLR::StepLR(float base_lr, std::int64_t step_size, float gamma)
    : m_base_lr(base_lr), m_step_size(step_size), m_gamma(gamma) {
  check_base_lr(base_lr, "StepLR");
  AEGIS_CHECK(step_size >= 1, "StepLR step_size " << step_size << " must be at least 1");
  AEGIS_CHECK(std::isfinite(gamma) && gamma > 0.0f, "StepLR gamma " << gamma << " must be positive and finite");
}
float StepLR::lr_at(std::int64_t step) const {
  check_step(step, "StepLR");
  const double decays = static_cast<double>(step / m_step_size);
  return static_cast<float>(m_base_lr * std::pow(static_cast<double>(m_gamma), decays));
}
std::string StepLR::describe() const {
  std::ostringstream os;
  os << "StepLR(base_lr=" << m_base_lr << ", step_size=" << m_step_size << ", gamma=" << m_gamma << ")";
  return os.str();
}

// ---- cosine annealing ------------------------------------------------------------------------

CosineAnnealing::CosineAnnealing(float base_lr, std::int64_t total_steps, float eta_min)
    : m_base_lr(base_lr), m_total(total_steps), m_eta_min(eta_min) {
  check_base_lr(base_lr, "CosineAnnealing");
  AEGIS_CHECK(total_steps >= 1, "CosineAnnealing total_steps " << total_steps << " must be at least 1");
  AEGIS_CHECK(std::isfinite(eta_min) && eta_min >= 0.0f && eta_min <= base_lr,
              "CosineAnnealing eta_min " << eta_min << " must lie in [0, base_lr = " << base_lr << "]");
}
float CosineAnnealing::lr_at(std::int64_t step) const {
  check_step(step, "CosineAnnealing");
  const double x = static_cast<double>(std::min(step, m_total)) / static_cast<double>(m_total);
  return static_cast<float>(cos_anneal(m_base_lr, m_eta_min, x));
}
std::string CosineAnnealing::describe() const {
  std::ostringstream os;
  os << "CosineAnnealing(base_lr=" << m_base_lr << ", total_steps=" << m_total << ", eta_min=" << m_eta_min << ")";
  return os.str();
}

// ---- one cycle -------------------------------------------------------------------------------

OneCycle::OneCycle(float max_lr, std::int64_t total_steps, double pct_start, double div_factor,
                   double final_div_factor)
    : m_max_lr(max_lr),
      m_total(total_steps),
      m_pct_start(pct_start),
      m_div_factor(div_factor),
      m_final_div_factor(final_div_factor) {
  check_base_lr(max_lr, "OneCycle max");
  AEGIS_CHECK(total_steps >= 2, "OneCycle total_steps " << total_steps << " must be at least 2");
  AEGIS_CHECK(std::isfinite(pct_start) && pct_start >= 0.0 && pct_start <= 1.0,
              "OneCycle pct_start " << pct_start << " must lie in [0, 1]");
  AEGIS_CHECK(std::isfinite(div_factor) && div_factor > 0.0,
              "OneCycle div_factor " << div_factor << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(final_div_factor) && final_div_factor > 0.0,
              "OneCycle final_div_factor " << final_div_factor << " must be positive and finite");
  m_initial_lr = static_cast<double>(max_lr) / div_factor;
  m_final_lr = m_initial_lr / final_div_factor;
  // PyTorch: float(pct_start * total_steps) − 1, a real number (phase ends need not be integers).
  m_phase1_end = pct_start * static_cast<double>(total_steps) - 1.0;
}

float OneCycle::lr_at(std::int64_t step) const {
  check_step(step, "OneCycle");
  const double t = static_cast<double>(std::min(step, m_total - 1));
  const double last = static_cast<double>(m_total - 1);
  // Phase 1 when t ≤ e1, otherwise phase 2 starting at e1 (as PyTorch: start_step = previous end).
  const bool warmup = t <= m_phase1_end;
  const double start = warmup ? 0.0 : m_phase1_end;
  const double end = warmup ? m_phase1_end : last;
  const double from = warmup ? m_initial_lr : static_cast<double>(m_max_lr);
  const double to = warmup ? static_cast<double>(m_max_lr) : m_final_lr;
  const double x = end > start ? (t - start) / (end - start) : 1.0;
  return static_cast<float>(cos_anneal(from, to, x));
}

std::string OneCycle::describe() const {
  std::ostringstream os;
  os << "OneCycle(max_lr=" << m_max_lr << ", total_steps=" << m_total << ", pct_start=" << m_pct_start
     << ", div_factor=" << m_div_factor << ", final_div_factor=" << m_final_div_factor << ")";
  return os.str();
}

// ---- factory ---------------------------------------------------------------------------------

const char* schedule_name(ScheduleKind kind) noexcept {
  switch (kind) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::Step: return "step";
    case ScheduleKind::Cosine: return "cosine";
    case ScheduleKind::OneCycle: return "onecycle";
  }
  return "?";
}

ScheduleKind parse_schedule(const std::string& name) {
  return parse_named(name, {ScheduleKind::Constant, ScheduleKind::Step, ScheduleKind::Cosine, ScheduleKind::OneCycle},
                     schedule_name, "learning-rate schedule");
}

std::unique_ptr<LrSchedule> make_schedule(ScheduleKind kind, float lr, std::int64_t total_steps) {
  switch (kind) {
    case ScheduleKind::Constant: return std::make_unique<ConstantLR>(lr);
    case ScheduleKind::Step:
      AEGIS_CHECK(total_steps >= 1, "step schedule: total_steps " << total_steps << " must be at least 1");
      return std::make_unique<StepLR>(lr, std::max<std::int64_t>(1, total_steps / 3), 0.1f);
    case ScheduleKind::Cosine: return std::make_unique<CosineAnnealing>(lr, total_steps, 0.0f);
    case ScheduleKind::OneCycle: return std::make_unique<OneCycle>(lr, total_steps);
  }
  AEGIS_THROW(InvalidArgument, "unknown learning-rate schedule " << static_cast<int>(kind));
}

}  // namespace aegis::nn
