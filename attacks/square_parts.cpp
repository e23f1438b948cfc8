// Square attack parts (attacks/square_parts.h): geometry, draws, window offsets and the L2
// blocks, start and proposal (Andriushchenko et al. 2020, §3.2, Eq. 4 and Alg. 3).
#include "attacks/square_parts.h"

#include <algorithm>
#include <cmath>

namespace aegis::attacks::square_parts {

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

Draws example_draws(std::uint64_t seed, int iteration, std::int64_t i) {
  return Draws{philox::Key{seed, philox::kPurposeSquare, static_cast<std::uint32_t>(iteration)},
               static_cast<std::uint64_t>(i) << 24};
}

Draws batch_draws(std::uint64_t seed, int iteration) {
  // Example streams start at i·2^24 with i < 2^32: the batch's words start above them all.
  return Draws{philox::Key{seed, philox::kPurposeSquare, static_cast<std::uint32_t>(iteration)},
               std::uint64_t{1} << 56};
}

std::int64_t window_offset(Draws& draws, std::int64_t extent, std::int64_t s, bool reference_range) {
  return draws.below(reference_range ? std::max<std::int64_t>(extent - s, 1) : extent - s + 1);
}

namespace {

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

}  // namespace

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

void l2_start(const Geometry& g, double eps, const float* x0, Draws& place, Draws& signs, float* row) {
  const std::int64_t d = g.c * g.h * g.w;
  const auto at = [&](std::int64_t ch, std::int64_t i, std::int64_t j) { return (ch * g.h + i) * g.w + j; };
  std::vector<double> delta(static_cast<std::size_t>(d), 0.0);
  const std::int64_t s = std::max<std::int64_t>(std::min(g.h, g.w) / 5, 1);
  const std::int64_t sp = (g.h - s * (g.h / s)) / 2, sw = (g.w - s * (g.w / s)) / 2;
  for (std::int64_t bh = 0; bh < g.h / s; ++bh)
    for (std::int64_t bw = 0; bw < g.w / s; ++bw) {
      const std::vector<double> block = pseudo_gaussian(s, place);
      for (std::int64_t ch = 0; ch < g.c; ++ch) {
        const float sign = signs.sign();
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
    row[p] = std::clamp(static_cast<float>(x0[p] + delta[static_cast<std::size_t>(p)] / norm * eps), 0.0f, 1.0f);
}

void l2_proposal(const Geometry& g, std::int64_t s, double eps, const float* x0, Draws& place, Draws& signs,
                 bool reference_range, float* row) {
  const std::int64_t d = g.c * g.h * g.w;
  const auto at = [&](std::int64_t ch, std::int64_t i, std::int64_t j) { return (ch * g.h + i) * g.w + j; };
  const std::int64_t vh = window_offset(place, g.h, s, reference_range);
  const std::int64_t vw = window_offset(place, g.w, s, reference_range);
  const std::int64_t vh2 = window_offset(place, g.h, s, reference_range);
  const std::int64_t vw2 = window_offset(place, g.w, s, reference_range);
  std::vector<double> delta(static_cast<std::size_t>(d));
  double image_sq = 0.0;
  for (std::int64_t q = 0; q < d; ++q) {
    delta[static_cast<std::size_t>(q)] = static_cast<double>(row[q]) - x0[q];
    image_sq += delta[static_cast<std::size_t>(q)] * delta[static_cast<std::size_t>(q)];
  }
  const auto in_window = [&](std::int64_t a, std::int64_t b, std::int64_t h0, std::int64_t w0) {
    return a >= h0 && a < h0 + s && b >= w0 && b < w0 + s;
  };
  const std::vector<double> block = pseudo_gaussian(s, place);
  std::vector<double> fresh(static_cast<std::size_t>(g.c * s * s));
  double fresh_sq = 0.0;
  std::vector<double> windows_sq(static_cast<std::size_t>(g.c), 0.0);
  for (std::int64_t ch = 0; ch < g.c; ++ch) {
    double w1 = 0.0;  // ‖δ‖ on window 1 in this channel
    for (std::int64_t a = 0; a < g.h; ++a)
      for (std::int64_t b = 0; b < g.w; ++b) {
        const double v = delta[static_cast<std::size_t>(at(ch, a, b))];
        if (in_window(a, b, vh, vw)) w1 += v * v;
        if (in_window(a, b, vh, vw) || in_window(a, b, vh2, vw2)) windows_sq[static_cast<std::size_t>(ch)] += v * v;
      }
    w1 = std::sqrt(w1);
    const float sign = signs.sign();
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
    // The window's new mass: what the ball leaves free, shared per channel, plus what the two
    // windows held (Alg. 3, lines 8–11).
    const double budget = std::sqrt(std::max(eps * eps - image_sq, 0.0) / static_cast<double>(g.c) +
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
  double scale = eps / norm;
  for (int shrink = 0; shrink < 4; ++shrink) {
    double sq = 0.0;
    for (std::int64_t q = 0; q < d; ++q) {
      row[q] = std::clamp(static_cast<float>(x0[q] + delta[static_cast<std::size_t>(q)] * scale), 0.0f, 1.0f);
      const double diff = static_cast<double>(row[q]) - x0[q];
      sq += diff * diff;
    }
    if (std::sqrt(sq) <= eps) break;
    scale *= 1.0 - 1e-6;
  }
}

}  // namespace aegis::attacks::square_parts
