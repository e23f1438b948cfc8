// Square attack (Andriushchenko, Croce, Flammarion, Hein 2020, "Square Attack: a query-efficient
// black-box adversarial attack via random search", Alg. 1–3). Score-based: only logits are read,
// no gradient. The loss minimized is the margin L(x) = z_y − max_{j≠y} z_j (§3, "margin loss");
// an example is broken when L ≤ 0 (misclassified) and then stops being queried.
// L∞ (Alg. 2): start at x + ε·s with s ∈ {±1} constant along each column of each channel
// ("vertical stripes", §3.1); each iteration proposes, inside a random s×s window, the value
// x_best + 2ε·σ_c with one random sign σ_c per channel, clipped to the ε-ball and [0, 1], and
// keeps it when the margin decreases (a proposal that does not change the window is redrawn).
// L2 (Alg. 3): start with a grid of the paper's "pseudo-Gaussian" blocks (§3.2, η of Eq. 4: a
// sum of nested rectangles weighted 1/(k+1)², positive on one half and negative on the other)
// with random signs, scaled to ‖δ‖₂ = ε; each iteration moves the mass of a second window into a
// new block at the first window, rescaled per channel so that the total norm stays ε, and keeps
// the proposal when the margin decreases.
// Square size: s = round(√(p·d/c)) (L∞: ≥ 1; L2: ≥ 3 and odd), p halved on the reference
// schedule, p_init at iterations ≤ 10 and p_init/2^k after 10, 50, 200, 500, 1000, 2000, 4000,
// 6000, 8000 of a 10,000-iteration run, rescaled to the query budget.
// Randomness is Philox keyed by (seed, kPurposeSquare, iteration) and the example's position in
// the batch, so an example's run does not depend on the others. The search runs on the host in
// float (the proposals are sparse edits of one row); only forward passes run on the model's device.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attacks/attacks.h"
#include "core/philox.h"
#include "nn/functional.h"

namespace aegis::attacks {

double square_fraction(int iteration, int budget, double p_init) {
  // Andriushchenko et al. 2020, §3.1 and their reference schedule, rescaled to `budget` iterations.
  const long long it = static_cast<long long>(static_cast<double>(iteration) / budget * 10000.0);
  static const int bounds[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
  double p = p_init;
  for (int b : bounds)
    if (it > b) p /= 2.0;
  return p;
}

namespace {

struct Geometry {
  std::int64_t c = 1, h = 1, w = 1;
};

Geometry geometry(const Tensor& x) {
  Geometry g;
  if (x.dim() == 4) {
    g.c = x.size(1);
    g.h = x.size(2);
    g.w = x.size(3);
  } else if (x.dim() == 3) {
    g.h = x.size(1);
    g.w = x.size(2);
  } else {
    g.w = x.size(0) > 0 ? x.numel() / x.size(0) : 1;
  }
  return g;
}

// One Philox stream per (iteration, example): word j of example i.
struct Draws {
  philox::Key key;
  std::uint64_t base;
  std::uint32_t next = 0;
  std::uint32_t bits() { return philox::bits(key, base + next++); }
  double uniform() { return (bits() >> 8) * (1.0 / 16777216.0); }
  int below(std::int64_t n) { return static_cast<int>(bits() % static_cast<std::uint32_t>(n)); }  // n ≤ 2^16 here
  float sign() { return (bits() & 1u) ? 1.0f : -1.0f; }
};

// Eq. 4's η on an r×c block: Σ_k 1/(k+1)² over nested rectangles centred on (r/2, c/2), L2-normalized.
std::vector<double> rectangles(std::int64_t rows, std::int64_t cols) {
  std::vector<double> e(static_cast<std::size_t>(rows * cols), 0.0);
  const std::int64_t rc = rows / 2 + 1, cc = cols / 2 + 1;
  std::int64_t r0 = rc - 1, c0 = cc - 1;
  for (std::int64_t k = 0; k < std::max(rc, cc); ++k, --r0, --c0)
    for (std::int64_t i = std::max<std::int64_t>(r0, 0); i < std::min(r0 + 2 * k + 1, rows); ++i)
      for (std::int64_t j = std::max<std::int64_t>(c0, 0); j < std::min(c0 + 2 * k + 1, cols); ++j)
        e[static_cast<std::size_t>(i * cols + j)] += 1.0 / static_cast<double>((k + 1) * (k + 1));
  double norm = 0.0;
  for (double v : e) norm += v * v;
  norm = std::sqrt(norm);
  for (double& v : e) v /= norm > 0 ? norm : 1.0;
  return e;
}

// The s×s pseudo-Gaussian block: η on the top half, −η on the bottom, unit L2 norm, transposed
// with probability ½.
std::vector<double> pseudo_gaussian(std::int64_t s, Draws& draws) {
  std::vector<double> b(static_cast<std::size_t>(s * s), 0.0);
  const std::int64_t top = s / 2;
  const std::vector<double> up = rectangles(top, s), down = rectangles(s - top, s);
  for (std::int64_t i = 0; i < top; ++i)
    for (std::int64_t j = 0; j < s; ++j)
      b[static_cast<std::size_t>(i * s + j)] = up[static_cast<std::size_t>(i * s + j)];
  for (std::int64_t i = top; i < s; ++i)
    for (std::int64_t j = 0; j < s; ++j)
      b[static_cast<std::size_t>(i * s + j)] = -down[static_cast<std::size_t>((i - top) * s + j)];
  double norm = 0.0;
  for (double v : b) norm += v * v;
  norm = std::sqrt(norm);
  for (double& v : b) v /= norm > 0 ? norm : 1.0;
  if (draws.uniform() > 0.5)
    for (std::int64_t i = 0; i < s; ++i)
      for (std::int64_t j = i + 1; j < s; ++j)
        std::swap(b[static_cast<std::size_t>(i * s + j)], b[static_cast<std::size_t>(j * s + i)]);
  return b;
}

}  // namespace

AttackResult square(nn::Module& model, const Tensor& x, const Tensor& labels, const SquareOptions& options) {
  const AttackOptions& opt = options.attack;
  check_attack_input(x, "square input x");
  AEGIS_CHECK(options.queries >= 1, "square: queries " << options.queries << " must be at least 1");
  AEGIS_CHECK(std::isfinite(options.p_init) && options.p_init > 0.0f && options.p_init <= 1.0f,
              "square: p_init " << options.p_init << " must be in (0, 1]");
  AEGIS_CHECK(!opt.targeted, "square: only the untargeted attack is implemented");
  AEGIS_CHECK(opt.eot_draws == 1, "square: eot_draws " << opt.eot_draws << " does not apply (no gradient)");
  AEGIS_CHECK(opt.eps.defined(), "square: options.eps is required (one value or one per example)");
  const std::int64_t n = x.size(0), d = n > 0 ? x.numel() / n : 0;
  check_dtype(labels, DType::I32, "labels");
  check_shape(labels, {n}, "labels");
  const std::vector<std::int32_t> y = labels.to(Device::cpu()).to_vector<std::int32_t>();
  const std::vector<float> eps = broadcast_per_example(opt.eps, n, "eps").to_vector<float>();
  for (std::size_t i = 0; i < eps.size(); ++i)
    AEGIS_CHECK(std::isfinite(eps[i]) && eps[i] >= 0.0f, "eps[" << i << "] = " << eps[i] << " must be finite and ≥ 0");
  const Device dev = x.device();
  const Geometry g = geometry(x);
  const bool l2 = opt.norm == Norm::L2;
  const std::vector<float> clean = x.to(Device::cpu()).to_vector<float>();
  std::vector<float> best = clean;
  std::vector<double> margin(static_cast<std::size_t>(n), std::numeric_limits<double>::infinity());
  std::vector<std::int32_t> queries(static_cast<std::size_t>(n), 0);
  nn::FrozenScope frozen(model);
  std::int64_t k = 0;

  // Margins z_y − max_{j≠y} z_j of the rows `rows` (host, [ids.size(), d]) for examples ids.
  const auto margins = [&](const std::vector<std::int32_t>& ids, const std::vector<float>& rows) {
    Shape shape = x.shape();
    shape[0] = static_cast<std::int64_t>(ids.size());
    const Tensor logits = model.forward(autograd::Var(Tensor::from_vector(rows, shape).to(dev), false)).value();
    AEGIS_CHECK_AS(ShapeError, logits.dim() == 2 && logits.size(0) == shape[0] && logits.size(1) >= 2,
                   "square: the model must map examples to logits [m, K ≥ 2], got " << logits.describe());
    k = logits.size(1);
    const std::vector<float> z = logits.to(Device::cpu()).to_vector<float>();
    std::vector<double> out;
    for (std::size_t r = 0; r < ids.size(); ++r) {
      const std::int32_t yi = y[static_cast<std::size_t>(ids[r])];
      AEGIS_CHECK(yi >= 0 && yi < k, "labels[" << ids[r] << "] = " << yi << " is outside [0, " << k << ")");
      double other = -std::numeric_limits<double>::infinity();
      for (std::int64_t j = 0; j < k; ++j)
        if (j != yi) other = std::max(other, static_cast<double>(z[r * static_cast<std::size_t>(k) + j]));
      out.push_back(z[r * static_cast<std::size_t>(k) + yi] - other);
    }
    return out;
  };
  const auto gather = [&](const std::vector<std::int32_t>& ids, const std::vector<float>& from) {
    std::vector<float> rows(ids.size() * static_cast<std::size_t>(d));
    for (std::size_t r = 0; r < ids.size(); ++r)
      std::copy_n(&from[static_cast<std::size_t>(ids[r] * d)], d, &rows[r * static_cast<std::size_t>(d)]);
    return rows;
  };
  const auto at = [&](std::int64_t ch, std::int64_t i, std::int64_t j) { return (ch * g.h + i) * g.w + j; };

  std::vector<std::int32_t> active;
  if (n > 0) {
    std::vector<std::int32_t> all(static_cast<std::size_t>(n));
    for (std::int32_t i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
    const std::vector<double> m0 = margins(all, clean);  // the clean pass is not counted as a query
    for (std::int32_t i = 0; i < n; ++i) {
      margin[static_cast<std::size_t>(i)] = m0[static_cast<std::size_t>(i)];
      if (m0[static_cast<std::size_t>(i)] > 0.0) active.push_back(i);
    }
  }
  // Initialization (query 1).
  if (!active.empty()) {
    std::vector<float> rows = gather(active, clean);
    for (std::size_t r = 0; r < active.size(); ++r) {
      const std::int32_t i = active[r];
      const double e = eps[static_cast<std::size_t>(i)];
      Draws draws{philox::Key{opt.seed, philox::kPurposeSquare, 0}, static_cast<std::uint64_t>(i) << 24};
      float* row = &rows[r * static_cast<std::size_t>(d)];
      const float* x0 = &clean[static_cast<std::size_t>(i * d)];
      if (!l2) {
        for (std::int64_t ch = 0; ch < g.c; ++ch)
          for (std::int64_t j = 0; j < g.w; ++j) {
            const float s = draws.sign();
            for (std::int64_t i2 = 0; i2 < g.h; ++i2) {
              const std::int64_t p = at(ch, i2, j);
              row[p] = std::clamp(static_cast<float>(x0[p] + e * s), 0.0f, 1.0f);
            }
          }
      } else {
        std::vector<double> delta(static_cast<std::size_t>(d), 0.0);
        const std::int64_t s = std::max<std::int64_t>(std::min(g.h, g.w) / 5, 1);
        const std::int64_t sp = (g.h - s * (g.h / s)) / 2, sw = (g.w - s * (g.w / s)) / 2;
        for (std::int64_t bh = 0; bh < g.h / s; ++bh)
          for (std::int64_t bw = 0; bw < g.w / s; ++bw) {
            const std::vector<double> block = pseudo_gaussian(s, draws);
            for (std::int64_t ch = 0; ch < g.c; ++ch) {
              const float sign = draws.sign();
              for (std::int64_t a = 0; a < s; ++a)
                for (std::int64_t b = 0; b < s; ++b)
                  delta[static_cast<std::size_t>(at(ch, sp + bh * s + a, sw + bw * s + b))] +=
                      sign * block[static_cast<std::size_t>(a * s + b)];
            }
          }
        double norm = 0.0;
        for (double v : delta) norm += v * v;
        norm = std::sqrt(norm) + 1e-12;
        for (std::int64_t p = 0; p < d; ++p)
          row[p] = std::clamp(static_cast<float>(x0[p] + delta[static_cast<std::size_t>(p)] / norm * e), 0.0f, 1.0f);
      }
    }
    const std::vector<double> m = margins(active, rows);
    for (std::size_t r = 0; r < active.size(); ++r) {
      const auto i = static_cast<std::size_t>(active[r]);
      ++queries[i];
      // The start replaces the clean point even when its margin is larger: it is where the search begins.
      margin[i] = m[r];
      std::copy_n(&rows[r * static_cast<std::size_t>(d)], d, &best[i * static_cast<std::size_t>(d)]);
    }
  }
  const std::int64_t plane = g.h * g.w;
  for (int it = 1; it < options.queries; ++it) {
    std::vector<std::int32_t> ids;
    for (std::int32_t i : active)
      if (margin[static_cast<std::size_t>(i)] > 0.0) ids.push_back(i);
    active = ids;
    if (active.empty()) break;
    const double p = square_fraction(it - 1, options.queries - 1, options.p_init);
    std::int64_t s = static_cast<std::int64_t>(std::lround(std::sqrt(p * static_cast<double>(plane))));
    if (l2) {
      s = std::max<std::int64_t>(s, 3);
      if (s % 2 == 0) ++s;
    }
    s = std::clamp<std::int64_t>(s, 1, std::min(g.h, g.w));
    std::vector<float> rows = gather(active, best);
    for (std::size_t r = 0; r < active.size(); ++r) {
      const std::int32_t i = active[r];
      const double e = eps[static_cast<std::size_t>(i)];
      Draws draws{philox::Key{opt.seed, philox::kPurposeSquare, static_cast<std::uint32_t>(it)},
                  static_cast<std::uint64_t>(i) << 24};
      float* row = &rows[r * static_cast<std::size_t>(d)];
      const float* x0 = &clean[static_cast<std::size_t>(i * d)];
      const std::int64_t vh = draws.below(g.h - s + 1), vw = draws.below(g.w - s + 1);
      if (!l2) {
        // Redraw signs that would leave the window unchanged (Alg. 2's resampling), a few times at most.
        for (int attempt = 0; attempt < 8; ++attempt) {
          bool changed = false;
          for (std::int64_t ch = 0; ch < g.c; ++ch) {
            const double v = 2.0 * e * draws.sign();
            for (std::int64_t a = 0; a < s; ++a)
              for (std::int64_t b = 0; b < s; ++b) {
                const std::int64_t q = at(ch, vh + a, vw + b);
                const float old = best[static_cast<std::size_t>(i * d + q)];
                const float lo = std::max(0.0f, static_cast<float>(x0[q] - e));
                const float hi = std::min(1.0f, static_cast<float>(x0[q] + e));
                row[q] = std::clamp(static_cast<float>(old + v), lo, hi);
                changed = changed || std::fabs(row[q] - old) > 1e-7f;
              }
          }
          if (changed) break;
        }
      } else {
        const std::int64_t vh2 = draws.below(g.h - s + 1), vw2 = draws.below(g.w - s + 1);
        std::vector<double> delta(static_cast<std::size_t>(d));
        double image_sq = 0.0;
        for (std::int64_t q = 0; q < d; ++q) {
          delta[static_cast<std::size_t>(q)] = static_cast<double>(row[q]) - x0[q];
          image_sq += delta[static_cast<std::size_t>(q)] * delta[static_cast<std::size_t>(q)];
        }
        const auto in_window = [&](std::int64_t a, std::int64_t b, std::int64_t h0, std::int64_t w0) {
          return a >= h0 && a < h0 + s && b >= w0 && b < w0 + s;
        };
        const std::vector<double> block = pseudo_gaussian(s, draws);
        std::vector<double> fresh(static_cast<std::size_t>(g.c * s * s));
        double fresh_sq = 0.0;
        std::vector<double> windows_sq(static_cast<std::size_t>(g.c), 0.0);
        for (std::int64_t ch = 0; ch < g.c; ++ch) {
          double w1 = 0.0;  // ‖δ‖ on window 1 in this channel
          for (std::int64_t a = 0; a < g.h; ++a)
            for (std::int64_t b = 0; b < g.w; ++b) {
              const double v = delta[static_cast<std::size_t>(at(ch, a, b))];
              if (in_window(a, b, vh, vw)) w1 += v * v;
              if (in_window(a, b, vh, vw) || in_window(a, b, vh2, vw2))
                windows_sq[static_cast<std::size_t>(ch)] += v * v;
            }
          w1 = std::sqrt(w1);
          const float sign = draws.sign();
          for (std::int64_t a = 0; a < s; ++a)
            for (std::int64_t b = 0; b < s; ++b) {
              double& f = fresh[static_cast<std::size_t>((ch * s + a) * s + b)];
              f = sign * block[static_cast<std::size_t>(a * s + b)] +
                  delta[static_cast<std::size_t>(at(ch, vh + a, vw + b))] / (1e-12 + w1);
              fresh_sq += f * f;
            }
        }
        const double fresh_norm = std::sqrt(fresh_sq) + 1e-12;
        for (std::int64_t ch = 0; ch < g.c; ++ch) {
          // The window's new mass: what the ball leaves free, shared per channel, plus what the
          // two windows held (Alg. 3, lines 8–11).
          const double budget = std::sqrt(std::max(e * e - image_sq, 0.0) / static_cast<double>(g.c) +
                                          windows_sq[static_cast<std::size_t>(ch)]);
          for (std::int64_t a = vh2; a < vh2 + s; ++a)
            for (std::int64_t b = vw2; b < vw2 + s; ++b) delta[static_cast<std::size_t>(at(ch, a, b))] = 0.0;
          for (std::int64_t a = 0; a < s; ++a)
            for (std::int64_t b = 0; b < s; ++b)
              delta[static_cast<std::size_t>(at(ch, vh + a, vw + b))] =
                  fresh[static_cast<std::size_t>((ch * s + a) * s + b)] / fresh_norm * budget;
        }
        double norm = 0.0;
        for (double v : delta) norm += v * v;
        norm = std::sqrt(norm) + 1e-12;
        // Rescaled to ‖δ‖ = ε; the float result is shrunk, if need be, to stay inside the ball.
        double scale = e / norm;
        for (int shrink = 0; shrink < 4; ++shrink) {
          double sq = 0.0;
          for (std::int64_t q = 0; q < d; ++q) {
            row[q] = std::clamp(static_cast<float>(x0[q] + delta[static_cast<std::size_t>(q)] * scale), 0.0f, 1.0f);
            const double diff = static_cast<double>(row[q]) - x0[q];
            sq += diff * diff;
          }
          if (std::sqrt(sq) <= e) break;
          scale *= 1.0 - 1e-6;
        }
      }
    }
    const std::vector<double> m = margins(active, rows);
    for (std::size_t r = 0; r < active.size(); ++r) {
      const auto i = static_cast<std::size_t>(active[r]);
      ++queries[i];
      if (m[r] < margin[i]) {
        margin[i] = m[r];
        std::copy_n(&rows[r * static_cast<std::size_t>(d)], d, &best[i * static_cast<std::size_t>(d)]);
      }
    }
  }

  AttackResult result;
  std::vector<std::int32_t> success(static_cast<std::size_t>(n));
  std::vector<float> norms(static_cast<std::size_t>(n)), final_loss(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
    success[i] = margin[i] <= 0.0;
    final_loss[i] = static_cast<float>(margin[i]);
    double acc = 0.0;
    for (std::int64_t q = 0; q < d; ++q) {
      const double diff =
          static_cast<double>(best[i * static_cast<std::size_t>(d) + q]) - clean[i * static_cast<std::size_t>(d) + q];
      acc = l2 ? acc + diff * diff : std::max(acc, std::fabs(diff));
    }
    norms[i] = static_cast<float>(l2 ? std::sqrt(acc) : acc);
  }
  result.adversarial = Tensor::from_vector(best, x.shape()).to(dev);
  result.success = Tensor::from_vector(success, {n});
  result.perturbation_norm = Tensor::from_vector(norms, {n});
  result.final_loss = Tensor::from_vector(final_loss, {n});
  result.queries = Tensor::from_vector(queries, {n});
  return result;
}

}  // namespace aegis::attacks
