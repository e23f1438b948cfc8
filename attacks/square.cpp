// Square attack (Andriushchenko, Croce, Flammarion, Hein 2020, "Square Attack: a query-efficient
// black-box adversarial attack via random search", Alg. 1–3). Score-based: only logits are read,
// no gradient. The loss minimized is the margin L(x) = z_y − max_{j≠y} z_j (§3, "margin loss");
// an example is broken when L ≤ 0 (misclassified) and then stops being queried.
// L∞ (Alg. 2): start at x + ε·s with s ∈ {±1} constant along each column of each channel
// ("vertical stripes", §3.1); each iteration proposes, inside a random s×s window, the value
// x_best + 2ε·σ_c with one random sign σ_c per channel, clipped to the ε-ball and [0, 1], and
// keeps it when the margin decreases.
// L2 (Alg. 3): start with a grid of the paper's "pseudo-Gaussian" blocks (§3.2, η of Eq. 4: a
// sum of nested rectangles weighted 1/(k+1)², positive on one half and negative on the other)
// with random signs, scaled to ‖δ‖₂ = ε; each iteration moves the mass of a second window into a
// new block at the first window, rescaled per channel so that the total norm stays ε, and keeps
// the proposal when the margin decreases (attacks/square_parts.cpp).
// Square size: s = round(√(p·d/c)) (L∞: ≥ 1; L2: ≥ 3 and odd), p halved on the reference
// schedule, p_init at iterations ≤ 10 and p_init/2^k after 10, 50, 200, 500, 1000, 2000, 4000,
// 6000, 8000 of a 10,000-iteration run, rescaled to the query budget (or not: AutoAttack's
// setting, where a 5000-query run stops at p_init/128).
// Proposals. Shared (the official code's way): at each iteration one draw serves every example
// still attacked — the window positions, the L2 block's orientation, and the L∞ per-channel
// signs; the L2 per-channel signs and the starts' signs stay per example. As in that code, an L∞
// proposal that leaves the window unchanged is not redrawn, and window offsets range over
// {0, …, H − s − 1}: the last row and column are never in a window (square_parts::window_offset;
// this, not the sharing, is what makes the official Square weaker than per-example proposals).
// Per example: every example draws its own windows and signs from all H − s + 1 offsets, and
// unchanged L∞ windows are redrawn (Alg. 2's resampling); an example's run then does not depend
// on the rest of the batch.
// Randomness is Philox keyed by (seed, kPurposeSquare, iteration) and the example's position in
// the batch (shared draws: a stream above all examples'), so a run is reproducible given the seed
// (and, with shared proposals, the batch). The search runs on the host in float (the proposals
// are sparse edits of one row); only forward passes run on the model's device.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attacks/attacks.h"
#include "attacks/square_parts.h"
#include "core/named_enum.h"
#include "nn/functional.h"

namespace aegis::attacks {

using square_parts::batch_draws;
using square_parts::Draws;
using square_parts::example_draws;
using square_parts::l2_proposal;
using square_parts::l2_start;
using square_parts::window_offset;

const char* square_proposals_name(SquareProposals proposals) noexcept {
  switch (proposals) {
    case SquareProposals::Shared:
      return "shared";
    case SquareProposals::PerExample:
      return "per-example";
  }
  return "?";
}

SquareProposals parse_square_proposals(const std::string& name) {
  return parse_named(name, {SquareProposals::Shared, SquareProposals::PerExample}, square_proposals_name,
                     "square proposals mode");
}

double square_fraction(int iteration, int budget, double p_init) {
  // Andriushchenko et al. 2020, §3.1 and their reference schedule, rescaled to `budget` iterations.
  const long long it = static_cast<long long>(static_cast<double>(iteration) / budget * 10000.0);
  static const int bounds[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
  double p = p_init;
  for (int b : bounds)
    if (it > b) p /= 2.0;
  return p;
}

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
  const square_parts::Geometry g = square_parts::geometry(x);
  const bool shared = options.proposals == SquareProposals::Shared;
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
  // Initialization (query 1). L∞: vertical stripes, one sign per example, channel and column, in
  // both modes (the reference draws them per example too); L2: the block grid, its blocks shared
  // by the batch with shared proposals.
  if (!active.empty()) {
    std::vector<float> rows = gather(active, clean);
    const Draws batch0 = batch_draws(opt.seed, 0);
    for (std::size_t r = 0; r < active.size(); ++r) {
      const std::int32_t i = active[r];
      const double e = eps[static_cast<std::size_t>(i)];
      Draws own = example_draws(opt.seed, 0, i), batch = batch0;
      Draws& place = shared ? batch : own;
      float* row = &rows[r * static_cast<std::size_t>(d)];
      const float* x0 = &clean[static_cast<std::size_t>(i * d)];
      if (!l2) {
        for (std::int64_t ch = 0; ch < g.c; ++ch)
          for (std::int64_t j = 0; j < g.w; ++j) {
            const float sign = own.sign();
            for (std::int64_t i2 = 0; i2 < g.h; ++i2) {
              const std::int64_t p = at(ch, i2, j);
              row[p] = std::clamp(static_cast<float>(x0[p] + e * sign), 0.0f, 1.0f);
            }
          }
      } else {
        l2_start(g, e, x0, place, own, row);
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
  // The reference's AutoAttack runs its schedule unscaled (iteration i of 10,000).
  const int schedule_length = options.rescale_schedule ? options.queries - 1 : 10000;
  for (int it = 1; it < options.queries; ++it) {
    std::vector<std::int32_t> ids;
    for (std::int32_t i : active)
      if (margin[static_cast<std::size_t>(i)] > 0.0) ids.push_back(i);
    active = ids;
    if (active.empty()) break;
    const double p = square_fraction(it - 1, schedule_length, options.p_init);
    std::int64_t s = static_cast<std::int64_t>(std::lround(std::sqrt(p * static_cast<double>(plane))));
    if (l2) {
      s = std::max<std::int64_t>(s, 3);
      if (s % 2 == 0) ++s;
    }
    s = std::clamp<std::int64_t>(s, 1, std::min(g.h, g.w));
    std::vector<float> rows = gather(active, best);
    const Draws batch_it = batch_draws(opt.seed, it);
    for (std::size_t r = 0; r < active.size(); ++r) {
      const std::int32_t i = active[r];
      const double e = eps[static_cast<std::size_t>(i)];
      Draws own = example_draws(opt.seed, it, i), batch = batch_it;
      Draws& place = shared ? batch : own;
      float* row = &rows[r * static_cast<std::size_t>(d)];
      const float* x0 = &clean[static_cast<std::size_t>(i * d)];
      if (!l2) {
        const std::int64_t vh = window_offset(place, g.h, s, shared), vw = window_offset(place, g.w, s, shared);
        // Per example, signs that would leave the window unchanged are redrawn (Alg. 2's
        // resampling), a few times at most; shared signs are not (nor are they in the reference).
        for (int attempt = 0; attempt < (shared ? 1 : 8); ++attempt) {
          bool changed = false;
          for (std::int64_t ch = 0; ch < g.c; ++ch) {
            const double v = 2.0 * e * place.sign();
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
        l2_proposal(g, s, e, x0, place, own, shared, row);
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
