// clip_and_accumulate (privacy/per_example.h): per-example clip factors from the layers' norms,
// their one-copy bookkeeping, and the clipped sums, flat or per layer.
#include <algorithm>
#include <cmath>
#include <unordered_set>
#include <vector>

#include "kernels/per_example.h"
#include "privacy/per_example.h"
#include "privacy/per_example_layers.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::privacy {

using autograd::Var;
using namespace detail;

namespace {

// Every parameter that requires a gradient must be clipped: a layer without capture, or with its
// parameter gradients formed in the backward pass, would put an unclipped sum into the update.
void check_all_clippable(nn::Module& model, const std::vector<Layer>& layers) {
  std::unordered_set<const autograd::VarState*> clipped_params;
  for (const Layer& l : layers) {
    AEGIS_CHECK(l.capture->enabled && l.capture->skip_param_grads,
                "clip_and_accumulate: layer '" << l.name << "' was not set up for per-example clipping "
                                               << "(call privacy::enable_per_example_capture(model, true) before "
                                                  "the forward pass)");
    for (const Var& p : l.module->parameters()) clipped_params.insert(p.state());
  }
  for (const auto& [name, p] : model.named_parameters())
    AEGIS_CHECK(!p.requires_grad() || clipped_params.count(p.state()),
                "clip_and_accumulate: parameter '" << name << "' requires a gradient but belongs to no layer with a "
                                                   << "per-example capture, so it cannot be clipped");
}

// C_l per layer for per-layer clipping: the given ones, or C/√L each.
std::vector<float> per_layer_bounds(const ClipOptions& opt, std::size_t layers) {
  if (opt.per_layer_norms.empty())
    return std::vector<float>(layers,
                              opt.max_grad_norm / std::sqrt(static_cast<float>(std::max<std::size_t>(1, layers))));
  AEGIS_CHECK(opt.per_layer_norms.size() == layers,
              "clip_and_accumulate: " << opt.per_layer_norms.size() << " per-layer norms for " << layers
                                      << " clipped layers");
  for (float b : opt.per_layer_norms)
    AEGIS_CHECK(std::isfinite(b) && b > 0.0f, "clip_and_accumulate: per-layer norm " << b << " must be positive");
  return opt.per_layer_norms;
}

// Clip factors of one or several bounds over n examples (masked rows get 0). The bookkeeping of
// every bound (kernels/per_example.h: non-finite, clipped and unclipped norms, bad mask entries)
// lands in one int64 tensor on the device and comes back with one copy: one host synchronization
// per call, however many layers. Every factor is formed and checked before any gradient changes.
class Clipper {
 public:
  Clipper(Device dev, std::int64_t n, const float* mask, std::size_t bounds)
      : m_dev(dev), m_n(n), m_mask(mask), m_bounds(bounds),
        m_summary(Tensor::zeros({static_cast<std::int64_t>(bounds), 4}, DType::I64, dev)) {}

  // norms may come in as a view to write into (a row of the stacked per-layer norms).
  void clip(const Tensor& sq, float bound, Tensor& norms, Tensor& factors) const {
    if (!norms.defined()) norms = Tensor::empty({m_n}, DType::F32, m_dev);
    factors = Tensor::empty({m_n}, DType::F32, m_dev);
    AEGIS_DISPATCH(m_dev,
                   clip_factors(sq.data<float>(), m_mask, m_n, bound, norms.data<float>(), factors.data<float>()));
  }
  Device device() const { return m_dev; }
  std::int64_t examples() const { return m_n; }
  void summarize(std::size_t slot, const Tensor& norms, float bound) {
    AEGIS_DISPATCH(m_dev,
                   clip_summary(norms.data<float>(), m_mask, m_n, bound, m_summary.data<std::int64_t>() + 4 * slot));
  }
  // The summary on the host (non-finite, clipped, unclipped, bad mask per bound), checked.
  std::vector<std::int64_t> checked_summary(const char* what) const {
    const std::vector<std::int64_t> h = m_summary.to_vector<std::int64_t>();
    for (std::size_t slot = 0; slot < m_bounds; ++slot) {
      AEGIS_CHECK(h[4 * slot + 3] == 0, "clip_and_accumulate: " << h[4 * slot + 3]
                                                                << " example_mask entries lie outside [0, 1]");
      if (h[4 * slot])
        AEGIS_THROW(NumericError, "clip_and_accumulate: " << h[4 * slot] << " example(s) have a NaN or Inf " << what);
    }
    return h;
  }

 private:
  Device m_dev;
  std::int64_t m_n;
  const float* m_mask;
  std::size_t m_bounds;
  Tensor m_summary;
};

// Flat clipping: one bound C over the summed squared norms of all layers.
ClipStats clip_flat(const ClipOptions& opt, const Tensor& total, const std::vector<LayerGrads>& grads, Clipper& clipper) {
  ClipStats stats;
  clipper.clip(total, opt.max_grad_norm, stats.per_example_norms, stats.clip_factors);
  clipper.summarize(0, stats.per_example_norms, opt.max_grad_norm);
  const std::vector<std::int64_t> h = clipper.checked_summary("gradient norm");
  stats.clipped = h[1];
  stats.unclipped = h[2];
  for (const LayerGrads& r : grads)
    if (r.layer) accumulate_clipped_sum(r, stats.clip_factors);
  return stats;
}

// Per-layer clipping: bound C_l for layer l. An example counts as clipped when some layer clipped
// it, so the per-layer norms come back once, stacked, beside the summary.
ClipStats clip_per_layer(const std::vector<float>& bounds, const Tensor& total, const std::vector<Tensor>& layer_sq,
                         const std::vector<LayerGrads>& grads, const Tensor* example_mask, Clipper& clipper) {
  const std::int64_t n = clipper.examples();
  const Device dev = clipper.device();
  ClipStats stats;
  Tensor unused_factors;
  clipper.clip(total, 1.0f, stats.per_example_norms, unused_factors);  // only for the overall norms
  const std::size_t layers = bounds.size();
  Tensor stacked = Tensor::empty({static_cast<std::int64_t>(layers), n}, DType::F32, dev);
  for (std::size_t l = 0; l < layers; ++l) {
    Tensor norms = stacked.rows(static_cast<std::int64_t>(l), static_cast<std::int64_t>(l) + 1).reshape({n});
    Tensor factors;
    clipper.clip(layer_sq[l].defined() ? layer_sq[l] : Tensor::zeros({n}, DType::F32, dev), bounds[l], norms, factors);
    clipper.summarize(l, norms, bounds[l]);
    stats.per_layer_norms.push_back(std::move(norms));
    stats.per_layer_factors.push_back(std::move(factors));
  }
  clipper.checked_summary("per-layer gradient norm");
  const std::vector<float> h_norms = stacked.to_vector<float>();
  const std::vector<float> h_mask = example_mask ? example_mask->to_vector<float>() : std::vector<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    if (example_mask && h_mask[static_cast<std::size_t>(i)] == 0.0f) continue;
    bool any = false;
    for (std::size_t l = 0; l < layers; ++l)
      any = any || h_norms[l * static_cast<std::size_t>(n) + static_cast<std::size_t>(i)] > bounds[l];
    stats.clipped += any;
    stats.unclipped += !any;
  }
  for (std::size_t l = 0; l < layers; ++l)
    if (grads[l].layer) accumulate_clipped_sum(grads[l], stats.per_layer_factors[l]);
  return stats;
}

}  // namespace

ClipStats clip_and_accumulate(nn::Module& model, const ClipOptions& opt, const Tensor* example_mask) {
  const ClearOnExit clear(model);
  AEGIS_CHECK(std::isfinite(opt.max_grad_norm) && opt.max_grad_norm > 0.0f,
              "clip_and_accumulate: max_grad_norm must be positive and finite, got " << opt.max_grad_norm);
  AEGIS_CHECK(opt.group_size >= 1, "clip_and_accumulate: group_size " << opt.group_size << " must be at least 1");
  std::int64_t rows = 0;
  const std::vector<Layer> layers = captured_layers(model, rows);
  AEGIS_CHECK_AS(ShapeError, rows % opt.group_size == 0,
                 "clip_and_accumulate: " << rows << " captured rows are not whole groups of " << opt.group_size
                                         << " copies");
  const std::int64_t n = rows / opt.group_size;  // examples
  const Device dev = capture_device(layers);
  check_all_clippable(model, layers);
  const float* mask = nullptr;
  if (example_mask) {
    check_shape(*example_mask, {n}, "clip_and_accumulate example_mask");
    check_dtype(*example_mask, DType::F32, "clip_and_accumulate example_mask");
    AEGIS_CHECK_AS(ShapeError, example_mask->device() == dev,
                   "clip_and_accumulate: example_mask is on " << example_mask->device().str() << ", the captures on "
                                                              << dev.str());
    mask = example_mask->data<float>();
  }
  const std::vector<float> bounds = opt.per_layer ? per_layer_bounds(opt, layers.size()) : std::vector<float>{};

  // The per-example squared norms: summed over layers, and per layer for per-layer clipping.
  Tensor total = Tensor::zeros({n}, DType::F32, dev);
  std::vector<LayerGrads> grads(layers.size());
  std::vector<Tensor> layer_sq(layers.size());
  std::size_t keep_bytes = opt.keep_per_example_bytes;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    if (!layers[l].capture->output_grad.defined()) continue;  // not reached by this backward pass
    const auto norms_into = [&](Tensor& sq) {
      return opt.group_size > 1 ? layer_norms_grouped(layers[l], opt.group_size, sq)
                                : layer_norms(layers[l], opt.method, keep_bytes, sq);
    };
    if (opt.per_layer) {
      layer_sq[l] = Tensor::zeros({n}, DType::F32, dev);
      grads[l] = norms_into(layer_sq[l]);
      ops::add_inplace(total, layer_sq[l]);
    } else {
      grads[l] = norms_into(total);
    }
  }
  Clipper clipper(dev, n, mask, opt.per_layer ? layers.size() : 1);
  return opt.per_layer ? clip_per_layer(bounds, total, layer_sq, grads, example_mask, clipper)
                       : clip_flat(opt, total, grads, clipper);
}

}  // namespace aegis::privacy
