// Linear relaxation of max pooling for the CROWN backward pass (certify/bounds_graph.h,
// relax_max_pool). The output z = max_{j ∈ W} a_j of a window W (its in-bounds elements: padding
// acts as −∞, as in the pooling kernels) with a_j ∈ [l_j, u_j] satisfies (DeepPoly, Singh et
// al. 2019, §4.4, the max transformer)
//   z ≥ a_{j*} for any j* ∈ W — taken as j* = argmax_j l_j, the element known to be largest;
//   z = a_{j*} when l_{j*} ≥ u_j for every other j (the window is decided), else z ≤ max_j u_j.
// Both lines hold on the whole box, so a bound built from them is sound for every max.
#include <algorithm>
#include <limits>

#include "certify/bounds_graph.h"

namespace aegis::certify::detail {

namespace {

// Visits the in-bounds input elements (plane offsets) of output (oh, ow) of one plane.
template <class F>
void for_window(const kernels::Pool2dGeometry& g, std::int64_t oh, std::int64_t ow, F&& f) {
  const std::int64_t h0 = oh * g.stride - g.padding, w0 = ow * g.stride - g.padding;
  for (std::int64_t h = std::max<std::int64_t>(h0, 0); h < std::min(h0 + g.kernel, g.height); ++h)
    for (std::int64_t w = std::max<std::int64_t>(w0, 0); w < std::min(w0 + g.kernel, g.width); ++w) f(h * g.width + w);
}

struct WindowLines {
  std::int64_t lower_index = -1, upper_index = -1;
  float upper_bound = 0.0f;
};

// The lines of one window; indices are plane offsets.
template <class Window>
WindowLines window_lines(const float* l, const float* u, Window&& window) {
  WindowLines out;
  float best_lower = -std::numeric_limits<float>::infinity();
  out.upper_bound = -std::numeric_limits<float>::infinity();
  window([&](std::int64_t j) {
    if (out.lower_index < 0 || l[j] > best_lower) {
      best_lower = l[j];
      out.lower_index = j;
    }
    out.upper_bound = std::max(out.upper_bound, u[j]);
  });
  bool decided = true;
  window([&](std::int64_t j) {
    if (j != out.lower_index && u[j] > best_lower) decided = false;
  });
  if (decided) out.upper_index = out.lower_index;
  return out;
}

}  // namespace

Lines relax_max_pool(const Node& pool, const Box& pre) {
  const kernels::Pool2dGeometry& g = pool.pool;
  const std::vector<float> l = host_floats(pre.lower), u = host_floats(pre.upper);
  const std::int64_t in_size = g.channels * g.height * g.width,
                     n = in_size > 0 ? static_cast<std::int64_t>(l.size()) / in_size : 0;
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width(), plane_in = g.height * g.width;
  Lines out;
  const std::size_t total = static_cast<std::size_t>(n * pool.size);
  out.lower_index.resize(total);
  out.upper_index.resize(total);
  out.upper_icpt.assign(total, 0.0f);
  out.with_icpt.resize(static_cast<std::size_t>(n));
  for (std::int64_t e = 0; e < n; ++e)
    for (std::int64_t c = 0; c < g.channels; ++c) {
      const std::int64_t in_base = e * in_size + c * plane_in;
      for (std::int64_t oh = 0; oh < oh_n; ++oh)
        for (std::int64_t ow = 0; ow < ow_n; ++ow) {
          const WindowLines w =
              window_lines(l.data() + in_base, u.data() + in_base, [&](auto&& f) { for_window(g, oh, ow, f); });
          const std::size_t at = static_cast<std::size_t>(e * pool.size + (c * oh_n + oh) * ow_n + ow);
          out.lower_index[at] = c * plane_in + w.lower_index;
          out.upper_index[at] = w.upper_index < 0 ? -1 : c * plane_in + w.upper_index;
          if (w.upper_index < 0) out.upper_icpt[at] = w.upper_bound;
        }
    }
  return out;
}

std::vector<std::int64_t> undecided_pool_inputs(const Node& pool, const Box& pre) {
  const Lines lines = relax_max_pool(pool, pre);
  const kernels::Pool2dGeometry& g = pool.pool;
  const std::int64_t in_size = g.channels * g.height * g.width, plane_in = g.height * g.width;
  const std::int64_t oh_n = g.out_height(), ow_n = g.out_width();
  std::vector<char> mark(static_cast<std::size_t>(in_size), 0);
  for (std::size_t at = 0; at < lines.upper_index.size(); ++at) {
    if (lines.upper_index[at] >= 0) continue;
    const std::int64_t o = static_cast<std::int64_t>(at) % pool.size;
    const std::int64_t c = o / (oh_n * ow_n), oh = (o / ow_n) % oh_n, ow = o % ow_n;
    for_window(g, oh, ow, [&](std::int64_t j) { mark[static_cast<std::size_t>(c * plane_in + j)] = 1; });
  }
  std::vector<std::int64_t> out;
  for (std::int64_t j = 0; j < in_size; ++j)
    if (mark[static_cast<std::size_t>(j)]) out.push_back(j);
  return out;
}

}  // namespace aegis::certify::detail
