// Linear relaxations of the activations for the CROWN backward pass: per (example, neuron), two
// lines that enclose f on the neuron's pre-activation interval [l, u].
//
// ReLU (Zhang et al. 2018; Wong & Kolter 2018, their convex ReLU relaxation):
//   u ≤ 0: f = 0 on [l, u] (both lines 0);  l ≥ 0: f = z (both lines z);
//   l < 0 < u: upper = chord  u(z − l)/(u − l),  lower = αz with α ∈ [0, 1] — any such α is
//   below max(0, z) — α = 1 if u ≥ −l else 0 (Adaptive: the choice minimizing the area between
//   the lines) or α = u/(u − l) (WongKolter: parallel to the chord).
// Tanh and Sigmoid, both increasing, convex on z ≤ 0 and concave on z ≥ 0, with f' largest at 0
// and decreasing in |z| (Zhang et al. 2018, §3.3, the cases by the signs of l and u):
//   u ≤ 0 (convex): upper = chord, lower = tangent at m = (l + u)/2 (a convex function lies
//     above its tangents and below its chords);
//   l ≥ 0 (concave): lower = chord, upper = tangent at m;
//   l < 0 < u: with s = min(f'(l), f'(u)) — the smallest slope of f on [l, u], since f' is
//     unimodal with its maximum at 0 — lower = s(z − l) + f(l) and upper = s(z − u) + f(u):
//     f(z) − f(l) − s(z − l) is 0 at l and nondecreasing, f(u) + s(z − u) − f(z) is 0 at u and
//     nonincreasing. (CROWN finds tangents through the endpoints by a search; these lines are a
//     sound, closed-form substitute, looser than CROWN's for wide intervals.)
//   A degenerate interval (u − l ≤ 1e-6) takes the constant lines f(l) and f(u), exact there.
#include <cmath>

#include "certify/bounds_graph.h"

namespace aegis::certify::detail {

namespace {

double act(kernels::Activation f, double z) {
  return f == kernels::Activation::Tanh ? std::tanh(z) : 1.0 / (1.0 + std::exp(-z));
}

double act_slope(kernels::Activation f, double z) {
  const double y = act(f, z);
  return f == kernels::Activation::Tanh ? 1.0 - y * y : y * (1.0 - y);
}

struct Line {
  double slope = 0.0, icpt = 0.0;
};

Line through(double slope, double z, double y) {
  return {slope, y - slope * z};
}

void relu_lines(double l, double u, ReluRelaxation relu, Line& lo, Line& up) {
  if (u <= 0.0) {
    lo = up = Line{};
  } else if (l >= 0.0) {
    lo = up = Line{1.0, 0.0};
  } else {
    const double chord = u / (u - l);
    up = Line{chord, -chord * l};
    lo = Line{relu == ReluRelaxation::WongKolter ? chord : (u >= -l ? 1.0 : 0.0), 0.0};
  }
}

void s_shaped_lines(kernels::Activation f, double l, double u, Line& lo, Line& up) {
  const double fl = act(f, l), fu = act(f, u);
  if (u - l <= 1e-6) {
    lo = Line{0.0, fl};
    up = Line{0.0, fu};
    return;
  }
  const double m = 0.5 * (l + u);
  const Line chord = through((fu - fl) / (u - l), l, fl);
  const Line tangent = through(act_slope(f, m), m, act(f, m));
  if (u <= 0.0) {
    up = chord;
    lo = tangent;
  } else if (l >= 0.0) {
    lo = chord;
    up = tangent;
  } else {
    const double s = std::min(act_slope(f, l), act_slope(f, u));
    lo = through(s, l, fl);
    up = through(s, u, fu);
  }
}

}  // namespace

Lines relax(kernels::Activation f, const Box& pre, ReluRelaxation relu) {
  const std::vector<float> l = host_floats(pre.lower), u = host_floats(pre.upper);
  Lines out;
  out.lower_slope.resize(l.size());
  out.lower_icpt.resize(l.size());
  out.upper_slope.resize(l.size());
  out.upper_icpt.resize(l.size());
  for (std::size_t i = 0; i < l.size(); ++i) {
    Line lo, up;
    if (f == kernels::Activation::ReLU)
      relu_lines(l[i], u[i], relu, lo, up);
    else
      s_shaped_lines(f, l[i], u[i], lo, up);
    out.lower_slope[i] = static_cast<float>(lo.slope);
    out.lower_icpt[i] = static_cast<float>(lo.icpt);
    out.upper_slope[i] = static_cast<float>(up.slope);
    out.upper_icpt[i] = static_cast<float>(up.icpt);
  }
  const std::int64_t n = pre.lower.size(0), size = n > 0 ? pre.lower.numel() / n : 0;
  out.with_icpt.resize(static_cast<std::size_t>(n));
  for (std::int64_t e = 0; e < n; ++e)
    for (std::int64_t j = 0; j < size; ++j) {
      const std::size_t k = static_cast<std::size_t>(e * size + j);
      if (out.lower_icpt[k] != 0.0f || out.upper_icpt[k] != 0.0f)
        out.with_icpt[static_cast<std::size_t>(e)].push_back(j);
    }
  return out;
}

std::vector<std::int64_t> undecided_neurons(kernels::Activation f, const Box& pre) {
  const std::vector<float> l = host_floats(pre.lower), u = host_floats(pre.upper);
  const std::int64_t n = pre.lower.size(0);
  const std::int64_t size = n > 0 ? pre.lower.numel() / n : 0;
  std::vector<std::int64_t> out;
  for (std::int64_t j = 0; j < size; ++j) {
    for (std::int64_t e = 0; e < n; ++e) {
      const std::size_t i = static_cast<std::size_t>(e * size + j);
      const bool undecided = f == kernels::Activation::ReLU ? (l[i] < 0.0f && u[i] > 0.0f) : l[i] < u[i];
      if (undecided) {
        out.push_back(j);
        break;
      }
    }
  }
  return out;
}

}  // namespace aegis::certify::detail
