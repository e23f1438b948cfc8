// verify_vnnlib (certify/vnnlib_verify.h): bounds for unsat, a checked PGD counterexample for sat.
#include "certify/vnnlib_verify.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>

#include "core/philox.h"
#include "nn/module.h"
#include "runtime/ops.h"

namespace aegis::certify {

const char* vnn_answer_name(VnnAnswer answer) noexcept {
  switch (answer) {
    case VnnAnswer::Unsat:
      return "unsat";
    case VnnAnswer::Sat:
      return "sat";
    case VnnAnswer::Unknown:
      break;
  }
  return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;

struct Deadline {
  Clock::time_point at;
  bool set = false;
  bool passed() const { return set && Clock::now() >= at; }
};

// A disjunct's box as floats inside it: lower rounded up, upper rounded down (a float point of
// this box lies in the real one); a box narrower than one float keeps the nearest floats.
void float_box(const VnnDisjunct& d, std::vector<float>& lo, std::vector<float>& hi) {
  const float inf = std::numeric_limits<float>::infinity();
  lo.resize(d.lower.size());
  hi.resize(d.upper.size());
  for (std::size_t i = 0; i < lo.size(); ++i) {
    float l = static_cast<float>(d.lower[i]), u = static_cast<float>(d.upper[i]);
    if (static_cast<double>(l) < d.lower[i]) l = std::nextafter(l, inf);
    if (static_cast<double>(u) > d.upper[i]) u = std::nextafter(u, -inf);
    if (l > u) l = u = static_cast<float>(0.5 * (d.lower[i] + d.upper[i]));
    lo[i] = l;
    hi[i] = u;
  }
}

// Whether outputs y (float) satisfy every constraint exactly, evaluated in double.
bool satisfies(const VnnDisjunct& d, const float* y) {
  for (const OutputConstraint& c : d.constraints) {
    double v = c.constant;
    for (std::size_t j = 0; j < c.coef.size(); ++j) v += c.coef[j] * static_cast<double>(y[j]);
    if (c.strict ? !(v < 0.0) : !(v <= 0.0)) return false;
  }
  return true;
}

class Search {
 public:
  Search(nn::Module& model, const Shape& input_shape, const VnnProperty& p, const VnnOptions& o, const Deadline& dl)
      : m_model(model), m_shape(input_shape), m_p(p), m_o(o), m_deadline(dl) {
    const std::vector<autograd::Var> params = model.parameters();
    m_dev = params.empty() ? Device::cpu() : params.front().value().device();
  }

  // Outputs of a batch of inputs [R, d] (host), [R, K] on the host.
  std::vector<float> forward(const std::vector<float>& x, std::int64_t rows) {
    return m_model.forward(autograd::Var(input(x, rows))).value().to_vector<float>();
  }

  // Whether x (one input, host) is a counterexample of d by a forward pass of x alone; fills r.
  bool confirm(const VnnDisjunct& d, const std::vector<float>& x, VnnResult& r) {
    const std::vector<float> y = forward(x, 1);
    AEGIS_CHECK_AS(ShapeError, static_cast<std::int64_t>(y.size()) == m_p.num_outputs,
                   m_p.source << " declares " << m_p.num_outputs << " outputs Y_j, but the model has " << y.size());
    if (!satisfies(d, y.data())) return false;
    r.answer = VnnAnswer::Sat;
    r.x = x;
    r.y = y;
    return true;
  }

  // PGD on Σ_k max(0, c_k·Y + d_k) over d's box, all starts as one batch; true with r filled when
  // a confirmed counterexample is found.
  bool pgd(const VnnDisjunct& d, std::size_t index, VnnResult& r) {
    std::vector<float> lo, hi;
    float_box(d, lo, hi);
    const std::int64_t dim = m_p.num_inputs, rows = std::max(1, m_o.attack_restarts), k = m_p.num_outputs;
    std::vector<float> x(static_cast<std::size_t>(rows * dim));
    Tensor noise = Tensor::empty({rows, dim});
    ops::fill_uniform(noise, philox::Key{m_o.seed, philox::kPurposeAttackStart, static_cast<std::uint32_t>(index)},
                      0.0f, 1.0f);
    const std::vector<float> t = noise.to_vector<float>();
    for (std::int64_t s = 0; s < rows; ++s)
      for (std::int64_t i = 0; i < dim; ++i) {
        const std::size_t at = static_cast<std::size_t>(s * dim + i), ii = static_cast<std::size_t>(i);
        const float u = s == 0 ? 0.5f : t[at];  // start 0: the center
        x[at] = std::min(hi[ii], std::max(lo[ii], lo[ii] + u * (hi[ii] - lo[ii])));
      }
    for (int step = 0; step <= m_o.attack_steps; ++step) {
      if (m_deadline.passed()) return false;
      autograd::Var in(input(x, rows), true);
      const autograd::Var out = m_model.forward(in);
      const std::vector<float> y = out.value().to_vector<float>();
      std::vector<float> seed(static_cast<std::size_t>(rows * k), 0.0f);
      for (std::int64_t s = 0; s < rows; ++s) {
        const float* ys = y.data() + s * k;
        if (satisfies(d, ys)) {
          const std::vector<float> xs(x.begin() + s * dim, x.begin() + (s + 1) * dim);
          if (confirm(d, xs, r)) return true;
        }
        for (const OutputConstraint& c : d.constraints) {
          double v = c.constant;
          for (std::int64_t j = 0; j < k; ++j) v += c.coef[static_cast<std::size_t>(j)] * ys[j];
          if (v >= 0.0)  // an unmet constraint (v = 0 is unmet when strict, and met otherwise: push on)
            for (std::int64_t j = 0; j < k; ++j)
              seed[static_cast<std::size_t>(s * k + j)] += static_cast<float>(c.coef[static_cast<std::size_t>(j)]);
        }
      }
      if (step == m_o.attack_steps) break;
      autograd::backward(out, Tensor::from_vector(seed, {rows, k}).to(m_dev));
      const std::vector<float> g = in.grad().to_vector<float>();
      // Step size: from about a quarter of the box's width down to 1/100 of it, linearly.
      const double frac = 0.25 * (1.0 - static_cast<double>(step) / m_o.attack_steps) + 0.01;
      for (std::size_t at = 0; at < x.size(); ++at) {
        const std::size_t i = at % static_cast<std::size_t>(dim);
        const float dir = g[at] > 0.0f ? -1.0f : (g[at] < 0.0f ? 1.0f : 0.0f);
        x[at] = std::min(hi[i], std::max(lo[i], x[at] + dir * static_cast<float>(frac * (hi[i] - lo[i]))));
      }
    }
    return false;
  }

  Tensor input(const std::vector<float>& x, std::int64_t rows) const {
    Shape s{rows};
    s.insert(s.end(), m_shape.begin(), m_shape.end());
    return Tensor::from_vector(x, s).to(m_dev);
  }

 private:
  nn::Module& m_model;
  Shape m_shape;
  const VnnProperty& m_p;
  const VnnOptions& m_o;
  const Deadline& m_deadline;
  Device m_dev = Device::cpu();
};

// Marks verified[d] for the disjuncts of `group` (sharing one box) whose constraints bounds show
// cannot all hold: one constraint c·Y + d ≤ 0 whose minimum over the box is > 0, or, for several
// constraints, their sum (Σ c_k)·Y + Σ d_k ≤ 0 — implied by the conjunction — with minimum > 0
// (a joint certificate where each constraint alone is feasible).
void bound_group(nn::Module& model, const Shape& shape, const VnnProperty& p, const std::vector<std::size_t>& group,
                 BoundMethod method, ReluRelaxation relu, std::vector<char>& verified) {
  struct Row {
    std::size_t disjunct;
    double constant;
    bool strict;
  };
  std::vector<float> rows;
  std::vector<Row> owner;
  for (std::size_t di : group) {
    if (verified[di]) continue;
    const std::vector<OutputConstraint>& cs = p.disjuncts[di].constraints;
    for (const OutputConstraint& c : cs) {
      for (double v : c.coef) rows.push_back(static_cast<float>(v));
      owner.push_back({di, c.constant, c.strict});
    }
    if (cs.size() < 2) continue;
    std::vector<double> sum(static_cast<std::size_t>(p.num_outputs), 0.0);
    double constant = 0.0;
    for (const OutputConstraint& c : cs) {
      for (std::size_t j = 0; j < sum.size(); ++j) sum[j] += c.coef[j];
      constant += c.constant;
    }
    for (double v : sum) rows.push_back(static_cast<float>(v));
    owner.push_back({di, constant, false});
  }
  if (owner.empty()) return;
  // The box of the real bounds rounded outward to floats, which contains it.
  const VnnDisjunct& d = p.disjuncts[group.front()];
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> lo(d.lower.size()), hi(d.upper.size());
  for (std::size_t i = 0; i < lo.size(); ++i) {
    lo[i] = static_cast<float>(d.lower[i]);
    hi[i] = static_cast<float>(d.upper[i]);
    if (static_cast<double>(lo[i]) > d.lower[i]) lo[i] = std::nextafter(lo[i], -inf);
    if (static_cast<double>(hi[i]) < d.upper[i]) hi[i] = std::nextafter(hi[i], inf);
  }
  const std::vector<double> lower = spec_lower_bounds(
      model, Tensor::from_vector(lo, shape), Tensor::from_vector(hi, shape),
      Tensor::from_vector(rows, {static_cast<std::int64_t>(owner.size()), p.num_outputs}), method, relu);
  for (std::size_t m = 0; m < owner.size(); ++m) {
    const double v = lower[m] + owner[m].constant;  // min over the box of c·Y + d
    if (owner[m].strict ? v >= 0.0 : v > 0.0) verified[owner[m].disjunct] = 1;
  }
}

}  // namespace

VnnResult verify_vnnlib(nn::Module& model, const Shape& input_shape, const VnnProperty& p, const VnnOptions& o) {
  const auto t0 = Clock::now();
  AEGIS_CHECK(std::isfinite(o.timeout) && o.timeout >= 0.0, "VNN-LIB timeout " << o.timeout << " must be ≥ 0");
  AEGIS_CHECK(o.attack_steps >= 0 && o.attack_restarts >= 1,
              "VNN-LIB search: " << o.attack_steps << " steps and " << o.attack_restarts << " starts");
  AEGIS_CHECK_AS(ShapeError, shape_numel(input_shape) == p.num_inputs,
                 p.source << " declares " << p.num_inputs << " inputs X_i, but the model takes "
                          << shape_str(input_shape) << " = " << shape_numel(input_shape) << " values");
  Deadline dl;
  if (o.timeout > 0.0) {
    dl.set = true;
    dl.at = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout));
  }
  nn::FrozenScope frozen(model);
  VnnResult r;
  r.disjuncts = static_cast<std::int64_t>(p.disjuncts.size());
  auto done = [&](VnnAnswer a, const std::string& reason) {
    if (a != VnnAnswer::Sat) r.answer = a;
    r.reason = reason;
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return r;
  };
  if (p.disjuncts.empty()) return done(VnnAnswer::Unsat, "empty");  // no conjunction can hold
  Search search(model, input_shape, p, o, dl);
  // 1. The center of every box: a counterexample at no cost when the property fails plainly.
  for (std::size_t i = 0; i < p.disjuncts.size(); ++i) {
    if (dl.passed()) return done(VnnAnswer::Unknown, "timeout");
    std::vector<float> lo, hi, mid;
    float_box(p.disjuncts[i], lo, hi);
    for (std::size_t j = 0; j < lo.size(); ++j) mid.push_back(std::min(hi[j], std::max(lo[j], 0.5f * (lo[j] + hi[j]))));
    if (search.confirm(p.disjuncts[i], mid, r)) return done(VnnAnswer::Sat, "center");
  }
  // 2. Bounds, the disjuncts sharing a box at once, method by method.
  std::map<std::pair<std::vector<double>, std::vector<double>>, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < p.disjuncts.size(); ++i)
    groups[{p.disjuncts[i].lower, p.disjuncts[i].upper}].push_back(i);
  std::vector<char> verified(p.disjuncts.size(), 0);
  for (const BoundMethod m : o.methods) {
    for (const auto& [box, group] : groups) {
      if (dl.passed()) return done(VnnAnswer::Unknown, "timeout");
      bound_group(model, input_shape, p, group, m, o.relu, verified);
    }
    r.disjuncts_verified = std::count(verified.begin(), verified.end(), 1);
    if (r.disjuncts_verified == r.disjuncts) return done(VnnAnswer::Unsat, bound_method_name(m));
  }
  // 3. PGD on the disjuncts the bounds left open.
  for (std::size_t i = 0; i < p.disjuncts.size(); ++i) {
    if (verified[i] || o.attack_steps == 0) continue;
    if (search.pgd(p.disjuncts[i], i, r)) return done(VnnAnswer::Sat, "pgd");
    if (dl.passed()) return done(VnnAnswer::Unknown, "timeout");
  }
  return done(VnnAnswer::Unknown, "undecided");
}

}  // namespace aegis::certify
