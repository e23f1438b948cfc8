// FAB-T (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive
// boundary attack", Alg. 1 and §3), targeted, L∞ or L2. For each target class t (the example's
// r-th highest non-true class by clean logit, as APGD-T) and from the clean point x_orig, every
// iteration linearizes the boundary between y and t at the iterate x,
//   f(x') ≈ f(x) + ∇f(x)·(x' − x),   f = z_y − z_t,
// and projects both x and x_orig onto that hyperplane within the box [0, 1] (Eq. 4):
//   δ = argmin ‖δ‖ s.t. ∇f·δ = −f, x + δ ∈ [0, 1];   δ_orig the same from x_orig.
// The step is the biased combination (Eq. 7)
//   x ← clip[0,1]((1 − α)(x + η·δ) + α(x_orig + η·δ_orig)),  α = min(‖δ‖/(‖δ‖ + ‖δ_orig‖), α_max),
// with η = 1.05 (extrapolation) and α_max = 0.1; when the new point is misclassified it is
// recorded if it is the closest so far and the iterate moves back towards x_orig,
// x ← (1 − β)x_orig + β·x, β = 0.9.
// Restarts (attack.restarts per target class, on the examples not broken yet) start from random
// points around x_orig; the optional final search (final_search()) then moves each closest point
// found along its segment towards x_orig while it stays misclassified. AutoAttack's standard
// version runs neither (one run per target, as the reference's n_restarts = 1).
// Projection: the minimizer has the form δ(s) = clip(−s·v, lb, ub) with v = ∇f (L2: the KKT
// point of the box-constrained least-norm problem) or v = sign(∇f) (L∞: for a radius |s| the
// box-clipped corner that moves f most), and ∇f·δ(s) is non-increasing and piecewise linear in s;
// s solves ∇f·δ(s) = −f exactly on its linear piece, found by a quickselect over the breakpoints (project()),
// or gives the nearest attainable value when the box makes the hyperplane unreachable.
// FAB is a minimal-norm attack: an example counts as broken at radius ε when the closest
// misclassified point found lies within ε; with eps given, an example stops once that holds
// (without it, every run goes on minimizing the distance).
// The search runs on the host in double; forward and backward passes run on the model's device.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "attacks/attacks.h"
#include "core/philox.h"
#include "nn/functional.h"
#include "nn/quantize.h"

namespace aegis::attacks {

namespace {

// δ(s) = clip(−s·v, lb, ub) with w·δ(s) = target (or closest), written to out. With v_j of the
// sign of w_j (v = w, or sign(w)) and lb ≤ 0 ≤ ub, g(s) = w·δ(s) is piecewise linear and
// monotone with g(0) = 0. Write s = σt with t ≥ 0 and σ the sign that moves g towards the target
// (σ = +1 for a negative target) and u = σv: coordinate j follows −t·u_j until it reaches its
// bound b_j (lb_j for u_j > 0, ub_j for u_j < 0) at t_j = b_j/(−u_j), and stays there. Between
// consecutive breakpoints g = slope·t + constant, slope = Σ_{active} −u_j·w_j, constant =
// Σ_{clamped} w_j·b_j. A quickselect over the breakpoints (O(d) expected, where a bisection
// evaluates g, O(d), some 140 times) finds the segment where g reaches the target, which is then
// solved for exactly. When the box makes the target unreachable, every coordinate ends at its
// bound: the nearest attainable value.
struct Breakpoint {
  double t, slope, value;  // breakpoint, −u_j·w_j (while active), w_j·b_j (once clamped)
};

// `breaks` is scratch, reused across calls.
void project(const std::vector<double>& w, const std::vector<double>& v, const double* lb, const double* ub,
             double target, std::vector<double>& out, std::vector<Breakpoint>& breaks) {
  const std::size_t d = w.size();
  out.resize(d);
  double s = 0.0;
  if (target != 0.0) {
    const double sigma = target < 0.0 ? 1.0 : -1.0;
    breaks.clear();
    double slope = 0.0, constant = 0.0;  // of the undecided and high breakpoints / of the low ones
    for (std::size_t j = 0; j < d; ++j) {
      const double u = sigma * v[j];
      if (u == 0.0) continue;
      const double bound = u > 0.0 ? lb[j] : ub[j];
      const double t = bound / -u;
      if (t <= 0.0) continue;  // bound 0: clamped from the start, contributes w_j·0
      breaks.push_back({t, -u * w[j], w[j] * bound});
      slope += -u * w[j];
    }
    const auto reached = [&](double g) { return target < 0.0 ? g <= target : g >= target; };
    // Undecided breakpoints [first, last); below them "low" (clamped on the root's segment, in
    // `constant`), above them "high" (active there, in `slope` with the undecided ones).
    auto first = breaks.begin(), last = breaks.end();
    double low_max = 0.0, high_min = std::numeric_limits<double>::infinity();
    while (first != last) {
      const auto mid = first + (last - first) / 2;
      std::nth_element(first, mid, last, [](const Breakpoint& x, const Breakpoint& y) { return x.t < y.t; });
      double lo_slope = 0.0, lo_value = 0.0;  // of [first, mid]: clamped at t = mid->t
      for (auto it = first; it != mid + 1; ++it) {
        lo_slope += it->slope;
        lo_value += it->value;
      }
      if (reached((slope - lo_slope) * mid->t + constant + lo_value)) {
        high_min = mid->t;  // the root is at or below it: mid and above stay active up to the root
        last = mid;
      } else {
        low_max = mid->t;  // the root is above it: [first, mid] are clamped on its segment
        slope -= lo_slope;
        constant += lo_value;
        first = mid + 1;
      }
    }
    double t_star;
    if (high_min == std::numeric_limits<double>::infinity())
      t_star = low_max;  // unreachable: every coordinate at its bound
    else
      t_star = slope != 0.0 ? std::clamp((target - constant) / slope, low_max, high_min) : high_min;
    s = sigma * t_star;
  }
  for (std::size_t j = 0; j < d; ++j) out[j] = std::clamp(-s * v[j], lb[j], ub[j]);
}

double norm_of(const std::vector<double>& v, bool l2) {
  double acc = 0.0;
  for (double e : v) acc = l2 ? acc + e * e : std::max(acc, std::fabs(e));
  return l2 ? std::sqrt(acc) : acc;
}

// The final search (Croce & Hein 2020, after Alg. 1; the original FAB implementation's
// three-step search): on the segment from x_orig (class y) to the closest adversarial point found
// (class l), regula falsi on the logit margin. a1 = x_orig and a2 = x_adv bracket the boundary;
// the linear interpolation of z_y − z_l between them, t = f(a1)/(f(a1) + (−f(a2))), pushed 1% of
// the remaining way past that root (as FAB's η = 1.05 overshoots its projections: on the exact
// root float rounding picks the class, and a1 would creep towards it while a2 never moves), gives
// a3 = (1 − t)·a1 + t·a2, which replaces a1 when classified y and a2 (and l) otherwise; on a
// linear margin each step shrinks a2's margin a hundredfold. Where the interpolation falls
// outside (0, 1) — the margin is not monotone along the segment — the midpoint is taken (the
// original keeps a3 = a2, a query spent for nothing). a2 stays on the segment, so it
// stays misclassified, inside [0, 1] (a convex combination of two points of the box) and never
// farther from x_orig; the recorded point is the float one the model saw, kept only when its
// distance does not grow.
template <class LogitsOf>
void final_search(const LogitsOf& logits_of, const std::vector<float>& clean, const std::vector<std::int32_t>& y,
                  bool l2, int steps, std::vector<float>& best, std::vector<double>& best_norm) {
  const std::size_t n = y.size(), ud = clean.size() / std::max<std::size_t>(n, 1);
  std::vector<std::size_t> ids;
  for (std::size_t i = 0; i < n; ++i)
    if (std::isfinite(best_norm[i]) && best_norm[i] > 0.0) ids.push_back(i);
  if (ids.empty()) return;
  const std::size_t m = ids.size();
  std::vector<double> a1(m * ud), a2(m * ud);
  for (std::size_t r = 0; r < m; ++r)
    for (std::size_t j = 0; j < ud; ++j) {
      a1[r * ud + j] = clean[ids[r] * ud + j];
      a2[r * ud + j] = best[ids[r] * ud + j];
    }
  std::vector<float> z1 = logits_of(a1, m), z2 = logits_of(a2, m);
  const std::size_t k = z1.size() / m;
  const auto label = [&](const float* z) { return static_cast<std::size_t>(std::max_element(z, z + k) - z); };
  std::vector<double> a3(m * ud);
  for (int step = 0; step < steps; ++step) {
    for (std::size_t r = 0; r < m; ++r) {
      const auto yi = static_cast<std::size_t>(y[ids[r]]), li = label(&z2[r * k]);
      const double f1 = static_cast<double>(z1[r * k + yi]) - z1[r * k + li];
      const double f2 = static_cast<double>(z2[r * k + li]) - z2[r * k + yi];
      double t = f1 / (f1 + f2);
      t = t > 0.0 && t < 1.0 ? t + 0.01 * (1.0 - t) : 0.5;
      for (std::size_t j = 0; j < ud; ++j)
        a3[r * ud + j] = static_cast<float>((1.0 - t) * a1[r * ud + j] + t * a2[r * ud + j]);
    }
    const std::vector<float> z3 = logits_of(a3, m);
    for (std::size_t r = 0; r < m; ++r) {
      const std::size_t i = ids[r];
      const bool adversarial = label(&z3[r * k]) != static_cast<std::size_t>(y[i]);
      std::vector<double>& side = adversarial ? a2 : a1;
      std::vector<float>& zs = adversarial ? z2 : z1;
      std::copy_n(&a3[r * ud], ud, &side[r * ud]);
      std::copy_n(&z3[r * k], k, &zs[r * k]);
      if (!adversarial) continue;
      double dist = 0.0;
      for (std::size_t j = 0; j < ud; ++j) {
        const double e = a3[r * ud + j] - clean[i * ud + j];
        dist = l2 ? dist + e * e : std::max(dist, std::fabs(e));
      }
      if (l2) dist = std::sqrt(dist);
      if (dist <= best_norm[i]) {
        best_norm[i] = dist;
        for (std::size_t j = 0; j < ud; ++j) best[i * ud + j] = static_cast<float>(a3[r * ud + j]);
      }
    }
  }
}

}  // namespace

AttackResult fab_targeted(nn::Module& model, const Tensor& x, const Tensor& labels, const FabOptions& options) {
  const AttackOptions& opt = options.attack;
  check_attack_input(x, "fab-t input x");
  AEGIS_CHECK(opt.steps >= 1, "fab-t: steps " << opt.steps << " must be at least 1");
  AEGIS_CHECK(options.target_classes >= 1, "fab-t: target classes " << options.target_classes << " must be at least 1");
  AEGIS_CHECK(opt.norm == Norm::Linf || opt.norm == Norm::L2, "fab-t: norm must be linf or l2");
  AEGIS_CHECK(opt.eot_draws == 1, "fab-t: eot_draws " << opt.eot_draws << " is not supported");
  const std::int64_t n = x.size(0), d = n > 0 ? x.numel() / n : 0;
  check_dtype(labels, DType::I32, "labels");
  check_shape(labels, {n}, "labels");
  const std::vector<std::int32_t> y = labels.to(Device::cpu()).to_vector<std::int32_t>();
  std::vector<float> eps(static_cast<std::size_t>(n), std::numeric_limits<float>::infinity());
  if (opt.eps.defined()) eps = broadcast_per_example(opt.eps, n, "eps").to_vector<float>();
  const Device dev = x.device();
  const bool l2 = opt.norm == Norm::L2;
  const std::vector<float> clean = x.to(Device::cpu()).to_vector<float>();
  std::vector<float> best = clean;
  std::vector<double> best_norm(static_cast<std::size_t>(n), std::numeric_limits<double>::infinity());
  std::vector<std::int32_t> success(static_cast<std::size_t>(n), 0);
  AttackResult result;
  nn::FrozenScope frozen(model);
  nn::BpdaScope bpda(model, opt.bpda);
  const auto ud = static_cast<std::size_t>(d);

  // Logits of host rows (ids.size() × d); with grad_dz, also the input gradient of Σ dz·z.
  std::int64_t k = 0;
  const auto run = [&](const std::vector<double>& rows, std::size_t m, const std::vector<float>* grad_dz,
                       std::vector<float>* grad) {
    Shape shape = x.shape();
    shape[0] = static_cast<std::int64_t>(m);
    std::vector<float> f(rows.begin(), rows.end());
    autograd::Var input(Tensor::from_vector(f, shape).to(dev), grad_dz != nullptr);
    const autograd::Var logits = model.forward(input);
    AEGIS_CHECK_AS(ShapeError, logits.value().dim() == 2 && logits.value().size(1) >= 2,
                   "fab-t: the model must map examples to logits [m, K ≥ 2], got " << logits.value().describe());
    k = logits.value().size(1);
    if (grad_dz) {
      autograd::backward(logits, Tensor::from_vector(*grad_dz, {static_cast<std::int64_t>(m), k}).to(dev));
      result.gradient_evaluations += static_cast<std::int64_t>(m);
      *grad = input.grad().to(Device::cpu()).to_vector<float>();
    }
    return logits.value().to(Device::cpu()).to_vector<float>();
  };

  if (n > 0) {
    std::vector<double> all(clean.begin(), clean.end());
    const std::vector<float> z = run(all, static_cast<std::size_t>(n), nullptr, nullptr);
    const auto uk = static_cast<std::size_t>(k);
    std::vector<std::vector<std::int32_t>> ranked(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
      AEGIS_CHECK(y[i] >= 0 && y[i] < k, "labels[" << i << "] = " << y[i] << " is outside [0, " << k << ")");
      const float* zi = &z[i * uk];
      for (std::int32_t c = 0; c < k; ++c)
        if (c != y[i]) ranked[i].push_back(c);
      std::stable_sort(ranked[i].begin(), ranked[i].end(),
                       [&](std::int32_t a, std::int32_t b) { return zi[a] > zi[b]; });
      if (std::max_element(zi, zi + k) - zi != y[i]) {
        success[i] = 1;  // misclassified already: distance 0
        best_norm[i] = 0.0;
      }
    }
    const int runs = static_cast<int>(std::min<std::int64_t>(options.target_classes, k - 1));
    const int restarts = std::max(opt.restarts, 1);
    for (int run_index = 0; run_index < runs * restarts; ++run_index) {
      const int target_run = run_index / restarts, restart = run_index % restarts;
      std::vector<std::int32_t> ids;
      for (std::int32_t i = 0; i < n; ++i)
        if (!success[static_cast<std::size_t>(i)]) ids.push_back(i);
      if (ids.empty()) break;
      std::vector<double> cur;
      for (std::int32_t i : ids) cur.insert(cur.end(), clean.begin() + i * d, clean.begin() + (i + 1) * d);
      if (restart > 0) {
        // A random start on the sphere of radius ½·min(ε, best distance so far) around x_orig
        // (Croce & Hein 2020, the random restarts of FAB: Alg. 1 from a random x^(0); the radius
        // rule of the reference code, with its default ε of 0.3 for L∞ and 1 for L2 when none is
        // given): L∞ along t/‖t‖∞, t uniform in [−1, 1]^d; L2 along a Gaussian direction; then
        // clipped to [0, 1].
        const philox::Key key{opt.seed, philox::kPurposeAttackStart, static_cast<std::uint32_t>(run_index)};
        std::vector<double> t(ud);
        for (std::size_t p = 0; p < ids.size(); ++p) {
          const auto i = static_cast<std::size_t>(ids[p]);
          const double reach = opt.eps.defined() ? static_cast<double>(eps[i]) : (l2 ? 1.0 : 0.3);
          const double radius = 0.5 * std::min(reach, best_norm[i]);
          for (std::size_t j = 0; j < ud; ++j)
            t[j] = l2 ? philox::normal_double(key, i * ud + j) : 2.0 * philox::uniform(key, i * ud + j) - 1.0;
          const double scale = norm_of(t, l2);
          for (std::size_t j = 0; j < ud; ++j)
            cur[p * ud + j] = std::clamp(cur[p * ud + j] + (scale > 0 ? radius * t[j] / scale : 0.0), 0.0, 1.0);
        }
      }
      std::vector<std::int32_t> active(ids.size());
      std::iota(active.begin(), active.end(), 0);  // positions in ids
      for (int it = 0; it < opt.steps && !active.empty(); ++it) {
        const std::size_t m = active.size();
        std::vector<double> rows(m * ud);
        std::vector<float> dz(m * uk, 0.0f);
        for (std::size_t a = 0; a < m; ++a) {
          const auto p = static_cast<std::size_t>(active[a]);
          const auto i = static_cast<std::size_t>(ids[p]);
          std::copy_n(&cur[p * ud], ud, &rows[a * ud]);
          dz[a * uk + static_cast<std::size_t>(y[i])] = 1.0f;
          dz[a * uk + static_cast<std::size_t>(ranked[i][static_cast<std::size_t>(target_run)])] = -1.0f;
        }
        std::vector<float> grad;
        const std::vector<float> zc = run(rows, m, &dz, &grad);
        std::vector<double> next(m * ud);
        std::vector<double> w(ud), v(ud), lb(ud), ub(ud), d1, d2;
        std::vector<Breakpoint> breaks;
        for (std::size_t a = 0; a < m; ++a) {
          const auto i = static_cast<std::size_t>(ids[static_cast<std::size_t>(active[a])]);
          const auto t = static_cast<std::size_t>(ranked[i][static_cast<std::size_t>(target_run)]);
          const double f = static_cast<double>(zc[a * uk + static_cast<std::size_t>(y[i])]) - zc[a * uk + t];
          const double* xc = &rows[a * ud];
          const float* xo = &clean[i * ud];
          double shift = 0.0;  // ∇f·(x_orig − x)
          for (std::size_t j = 0; j < ud; ++j) {
            w[j] = grad[a * ud + j];
            v[j] = l2 ? w[j] : (w[j] > 0 ? 1.0 : w[j] < 0 ? -1.0 : 0.0);
            shift += w[j] * (xo[j] - xc[j]);
          }
          for (std::size_t j = 0; j < ud; ++j) lb[j] = -xc[j], ub[j] = 1.0 - xc[j];
          project(w, v, lb.data(), ub.data(), -f, d1, breaks);
          for (std::size_t j = 0; j < ud; ++j) lb[j] = -static_cast<double>(xo[j]), ub[j] = 1.0 - xo[j];
          project(w, v, lb.data(), ub.data(), -(f + shift), d2, breaks);
          const double n1 = norm_of(d1, l2), n2 = norm_of(d2, l2);
          const double alpha = n1 + n2 > 0 ? std::min(n1 / (n1 + n2), static_cast<double>(options.alpha_max)) : 0.0;
          for (std::size_t j = 0; j < ud; ++j)
            next[a * ud + j] = std::clamp(
                (1.0 - alpha) * (xc[j] + options.eta * d1[j]) + alpha * (xo[j] + options.eta * d2[j]), 0.0, 1.0);
        }
        const std::vector<float> zn = run(next, m, nullptr, nullptr);
        std::vector<std::int32_t> still;
        for (std::size_t a = 0; a < m; ++a) {
          const auto p = static_cast<std::size_t>(active[a]);
          const auto i = static_cast<std::size_t>(ids[p]);
          const float* zi = &zn[a * uk];
          const bool adversarial = std::max_element(zi, zi + k) - zi != y[i];
          double* xc = &cur[p * ud];
          const float* xo = &clean[i * ud];
          if (adversarial) {
            // The recorded point is the float one the model saw.
            double dist = 0.0;
            for (std::size_t j = 0; j < ud; ++j) {
              const double e = static_cast<double>(static_cast<float>(next[a * ud + j])) - xo[j];
              dist = l2 ? dist + e * e : std::max(dist, std::fabs(e));
            }
            if (l2) dist = std::sqrt(dist);
            if (dist < best_norm[i]) {
              best_norm[i] = dist;
              for (std::size_t j = 0; j < ud; ++j) best[i * ud + j] = static_cast<float>(next[a * ud + j]);
            }
            for (std::size_t j = 0; j < ud; ++j) xc[j] = (1.0 - options.beta) * xo[j] + options.beta * next[a * ud + j];
          } else {
            std::copy_n(&next[a * ud], ud, xc);
          }
          if (opt.eps.defined() && best_norm[i] <= eps[i]) {
            success[i] = 1;
          } else {
            still.push_back(active[a]);
          }
        }
        active = std::move(still);
      }
    }
  }
  if (options.final_search_steps > 0 && n > 0) {
    const auto logits_of = [&](const std::vector<double>& rows, std::size_t m) {
      return run(rows, m, nullptr, nullptr);
    };
    final_search(logits_of, clean, y, l2, options.final_search_steps, best, best_norm);
    if (opt.eps.defined())
      for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) success[i] = success[i] || best_norm[i] <= eps[i];
  }
  // Without ε every example found misclassified counts (minimal-norm use).
  if (!opt.eps.defined())
    for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) success[i] = std::isfinite(best_norm[i]);
  // Within ε: the closest point found; otherwise the clean input (nothing within the ball).
  std::vector<float> norms(static_cast<std::size_t>(n), 0.0f), final_loss(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
    final_loss[i] = static_cast<float>(best_norm[i]);
    if (!success[i]) {
      std::copy_n(&clean[i * ud], ud, &best[i * ud]);
      continue;
    }
    double acc = 0.0;
    for (std::size_t j = 0; j < ud; ++j) {
      const double e = static_cast<double>(best[i * ud + j]) - clean[i * ud + j];
      acc = l2 ? acc + e * e : std::max(acc, std::fabs(e));
    }
    norms[i] = static_cast<float>(l2 ? std::sqrt(acc) : acc);
  }
  result.adversarial = Tensor::from_vector(best, x.shape()).to(dev);
  result.success = Tensor::from_vector(success, {n});
  result.perturbation_norm = Tensor::from_vector(norms, {n});
  result.final_loss = Tensor::from_vector(final_loss, {n});
  return result;
}

}  // namespace aegis::attacks
