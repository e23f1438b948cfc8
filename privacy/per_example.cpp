// Book-keeping per-example clipping (privacy/per_example.h): per-layer norm pieces, clip factors
// and clipped sums, dispatched to kernels/per_example.h on the captures' device.
#include "privacy/per_example.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <unordered_set>

#include "kernels/blas.h"
#include "kernels/conv.h"
#include "kernels/per_example.h"
#include "nn/functional/conv_geometry.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::privacy {

namespace {

using autograd::Var;
using nn::CaptureOp;
using nn::LayerCapture;

// Device scratch for the conv norm kernels, per call (they process examples in rounds that fit).
constexpr std::size_t kConvWorkspaceBudget = std::size_t{256} << 20;

struct Layer {
  std::string name;
  nn::Module* module;
  LayerCapture* capture;
};

bool wants(const Var& p) {
  return p.defined() && p.requires_grad();
}

void collect_layers(nn::Module& m, const std::string& name, std::vector<Layer>& out) {
  if (LayerCapture* cap = m.capture()) {
    bool any = false;
    for (const Var& p : m.parameters()) any = any || p.requires_grad();
    if (any) out.push_back({name, &m, cap});
  }
  for (const auto& [child_name, child] : m.children())
    collect_layers(*child, name.empty() ? child_name : name + "." + child_name, out);
}

std::vector<Layer> layers_of(nn::Module& model) {
  std::vector<Layer> out;
  collect_layers(model, "", out);
  return out;
}

void for_each_capture(nn::Module& m, const std::function<void(LayerCapture&)>& f) {
  if (LayerCapture* cap = m.capture()) f(*cap);
  for (const auto& [name, child] : m.children()) for_each_capture(*child, f);
}

void clear_all(nn::Module& m) noexcept {
  if (LayerCapture* cap = m.capture()) cap->clear();
  for (const auto& [name, child] : m.children()) clear_all(*child);
}

kernels::Conv2dGeometry conv_geometry(const LayerCapture& c) {
  return nn::conv2d_geometry(c.activation, c.weight.value(), c.conv);
}

// c[1,N]·rows[N,cols] → [cols]: the clipped sum of stored per-example gradients.
Tensor clipped_row_sum(const Tensor& factors, const Tensor& rows) {
  const std::int64_t n = rows.size(0), cols = rows.numel() / std::max<std::int64_t>(n, 1);
  Tensor out = Tensor::empty({cols}, DType::F32, rows.device());
  AEGIS_DISPATCH(rows.device(),
                 weighted_row_sum(rows.data<float>(), factors.data<float>(), n, cols, out.data<float>()));
  return out;
}

// A [shape] view of the capture's scratch, which grows when too small and is otherwise reused
// from step to step (a fresh multi-megabyte buffer per step costs its page faults every time:
// measured 19 → 14 ms of clipping per cnn-fmnist step at batch 1024 on 2 cores).
Tensor scratch_of(LayerCapture& c, const Shape& shape, Device dev) {
  const std::int64_t need = shape_numel(shape);
  // A quarter to spare: Poisson-sampled batch sizes vary from step to step.
  if (!c.scratch.defined() || c.scratch.device() != dev || c.scratch.numel() < need)
    c.scratch = Tensor::empty({need + need / 4}, DType::F32, dev);
  return c.scratch.rows(0, need).reshape(shape);
}

// Everything one layer contributes: its per-example squared norms and what its clipped sums are
// formed from. Per-example bias / GroupNorm gradients are small ([N, O] or [N, C]) and always kept;
// materialized conv weight gradients are kept when they fit the budget.
struct LayerGrads {
  const Layer* layer = nullptr;
  bool ghost = false;
  Tensor per_example_weight;  // [N, ...] or undefined
  Tensor per_example_bias;    // [N, O] / [N, C] or undefined
};

// Adds the layer's per-example squared norms into sq_norms [N]. keep_bytes is what is left of
// the budget for stored per-example gradients; a layer that stores its own takes from it.
LayerGrads layer_norms(const Layer& layer, NormMethod method, std::size_t& keep_bytes, Tensor& sq_norms) {
  const LayerCapture& c = *layer.capture;
  const Tensor& a = c.activation;
  const Tensor& g = c.output_grad;
  const Device dev = g.device();
  const std::int64_t n = g.size(0);
  AEGIS_CHECK_AS(ShapeError, sq_norms.numel() == n,
                 "per-example norms: layer '" << layer.name << "' captured a batch of " << n << " but others "
                                              << sq_norms.numel());
  float* out = sq_norms.data<float>();
  const bool want_w = wants(c.weight), want_b = wants(c.bias);
  LayerGrads r;
  r.layer = &layer;
  switch (c.op) {
    case CaptureOp::Linear: {
      const std::int64_t in = a.size(1), o = g.size(1);
      // One position per example: ghost and materialized norms are the same exact formula.
      if (want_w)
        AEGIS_DISPATCH(dev, linear_sq_norms(a.data<float>(), g.data<float>(), n, in, o, want_b, out));
      else if (want_b)
        AEGIS_DISPATCH(dev, row_sq_norms(g.data<float>(), n, o, out));
      if (want_b) r.per_example_bias = g;
      r.ghost = true;
      break;
    }
    case CaptureOp::Conv2d: {
      const kernels::Conv2dGeometry geo = conv_geometry(c);
      const std::int64_t plane = geo.out_height() * geo.out_width();
      const std::int64_t patch = geo.in_channels * geo.kernel_h * geo.kernel_w;
      if (want_w) {
        const auto bytes = static_cast<std::size_t>(n * geo.out_channels * patch) * sizeof(float);
        // Auto: when the per-example gradients fit the budget, materializing them is the cheapest
        // in flops too — one T·d·p product per example serves the norm and the clipped sum (a
        // weighted row sum), where the ghost norm costs T²(d+p) and the sum still needs the T·d·p
        // filter-gradient product. Otherwise the mixed rule (Bu, Mao, Xu 2022): ghost when
        // 2T² < d·p, which needs the least memory.
        r.ghost = method == NormMethod::Ghost ||
                  (method == NormMethod::Auto && bytes > keep_bytes && 2 * plane * plane < patch * geo.out_channels);
        const bool keep = !r.ghost && bytes <= keep_bytes;
        if (keep) {
          r.per_example_weight = scratch_of(*layer.capture, {n, geo.out_channels * patch}, dev);
          keep_bytes -= bytes;
        }
        Tensor workspace;
        std::size_t ws_bytes = 0;
        if (dev.is_cuda() && n > 0) {
          const std::size_t per = kernels::conv2d_sq_norms_scratch_per_example(geo, r.ghost, keep);
          if (per > 0) {
            const std::int64_t chunk = std::max<std::int64_t>(
                1, std::min<std::int64_t>(n, static_cast<std::int64_t>(kConvWorkspaceBudget / per)));
            ws_bytes = per * static_cast<std::size_t>(chunk);
            workspace = Tensor::empty({static_cast<std::int64_t>((ws_bytes + 3) / 4)}, DType::F32, dev);
          }
        }
        AEGIS_DISPATCH(dev, conv2d_sq_norms(geo, r.ghost, a.data<float>(), g.data<float>(), out,
                                            keep ? r.per_example_weight.data<float>() : nullptr,
                                            workspace.defined() ? workspace.raw_data() : nullptr, ws_bytes));
      }
      if (want_b) {
        r.per_example_bias = Tensor::empty({n, geo.out_channels}, DType::F32, dev);
        AEGIS_DISPATCH(
            dev, conv_bias_per_example(g.data<float>(), n, geo.out_channels, plane, r.per_example_bias.data<float>()));
        AEGIS_DISPATCH(dev, row_sq_norms(r.per_example_bias.data<float>(), n, geo.out_channels, out));
      }
      break;
    }
    case CaptureOp::GroupNorm: {
      const std::int64_t ch = g.size(1), s = g.numel() / std::max<std::int64_t>(n * ch, 1);
      if (want_w) r.per_example_weight = Tensor::empty({n, ch}, DType::F32, dev);
      if (want_b) r.per_example_bias = Tensor::empty({n, ch}, DType::F32, dev);
      AEGIS_DISPATCH(dev, group_norm_per_example(g.data<float>(), a.data<float>(), n, ch, s,
                                                 want_w ? r.per_example_weight.data<float>() : nullptr,
                                                 want_b ? r.per_example_bias.data<float>() : nullptr));
      if (want_w) AEGIS_DISPATCH(dev, row_sq_norms(r.per_example_weight.data<float>(), n, ch, out));
      if (want_b) AEGIS_DISPATCH(dev, row_sq_norms(r.per_example_bias.data<float>(), n, ch, out));
      break;
    }
    case CaptureOp::None:
      AEGIS_THROW(InvalidArgument, "per-example norms: layer '" << layer.name << "' has a capture of no known op");
  }
  return r;
}

// Adds Σ_i c_i·grad_i of every parameter of the layer to that parameter's gradient.
void accumulate_clipped_sum(const LayerGrads& r, const Tensor& factors) {
  const LayerCapture& c = *r.layer->capture;
  const Tensor& a = c.activation;
  const Tensor& g = c.output_grad;
  const Device dev = g.device();
  const std::int64_t n = g.size(0);
  const float* f = factors.data<float>();
  if (wants(c.weight)) {
    const Shape& shape = c.weight.value().shape();
    Tensor dw;
    if (r.per_example_weight.defined()) {
      dw = clipped_row_sum(factors, r.per_example_weight);
    } else {
      // Scale row i of g by c_i, then the layer's ordinary weight-gradient product.
      Tensor scaled = Tensor::empty_like(g);
      AEGIS_DISPATCH(dev,
                     scale_rows(g.data<float>(), f, n, g.numel() / std::max<std::int64_t>(n, 1), scaled.data<float>()));
      dw = Tensor::empty(shape, DType::F32, dev);
      if (c.op == CaptureOp::Linear) {
        const std::int64_t in = a.size(1), o = g.size(1);
        AEGIS_DISPATCH(dev, gemm(kernels::GemmArgs{true, false, o, in, n, 1.0f, 0.0f}, scaled.data<float>(),
                                 a.data<float>(), dw.data<float>()));
      } else {
        AEGIS_CHECK(c.op == CaptureOp::Conv2d, "clipped sum: layer '" << r.layer->name << "' has no stored gradients");
        AEGIS_DISPATCH(
            dev, conv2d_backward_filter(conv_geometry(c), a.data<float>(), scaled.data<float>(), dw.data<float>()));
      }
    }
    c.weight.accumulate_grad_owned(dw.reshape(shape));
  }
  if (wants(c.bias)) c.bias.accumulate_grad_owned(clipped_row_sum(factors, r.per_example_bias));
}

// The clipped layers with a capture from this backward pass, checked for one batch size.
std::vector<Layer> captured_layers(nn::Module& model, std::int64_t& batch) {
  std::vector<Layer> layers = layers_of(model);
  batch = -1;
  for (const Layer& l : layers) {
    if (!l.capture->output_grad.defined()) continue;
    const std::int64_t n = l.capture->output_grad.size(0);
    AEGIS_CHECK_AS(ShapeError, batch < 0 || n == batch,
                   "per-example norms: layer '" << l.name << "' captured a batch of " << n << ", others " << batch);
    batch = n;
  }
  AEGIS_CHECK(batch >= 0,
              "per-example norms: no layer captured anything; enable capture "
              "(privacy::enable_per_example_capture) before the backward pass");
  return layers;
}

Device capture_device(const std::vector<Layer>& layers) {
  for (const Layer& l : layers)
    if (l.capture->output_grad.defined()) return l.capture->output_grad.device();
  return Device::cpu();
}

// Drops the captures when clip_and_accumulate leaves, normally or by an exception.
class ClearOnExit {
 public:
  explicit ClearOnExit(nn::Module& m) : m_model(m) {}
  ~ClearOnExit() { clear_all(m_model); }
  ClearOnExit(const ClearOnExit&) = delete;
  ClearOnExit& operator=(const ClearOnExit&) = delete;

 private:
  nn::Module& m_model;
};

}  // namespace

void enable_per_example_capture(nn::Module& model, bool on) {
  for_each_capture(model, [on](LayerCapture& c) {
    c.release();
    c.enabled = on;
    c.skip_param_grads = on;
  });
}

void clear_captures(nn::Module& model) {
  clear_all(model);
}

std::vector<std::string> per_example_layer_names(nn::Module& model) {
  std::vector<std::string> names;
  for (const Layer& l : layers_of(model)) names.push_back(l.name);
  return names;
}

std::vector<Tensor> per_layer_sq_norms(nn::Module& model, NormMethod method) {
  std::int64_t n = 0;
  const std::vector<Layer> layers = captured_layers(model, n);
  const Device dev = capture_device(layers);
  std::vector<Tensor> out;
  for (const Layer& l : layers) {
    out.push_back(Tensor::zeros({n}, DType::F32, dev));
    std::size_t keep = 0;
    if (l.capture->output_grad.defined()) layer_norms(l, method, keep, out.back());
  }
  return out;
}

Tensor per_example_sq_norms(nn::Module& model, NormMethod method) {
  std::int64_t n = 0;
  const std::vector<Layer> layers = captured_layers(model, n);
  Tensor total = Tensor::zeros({n}, DType::F32, capture_device(layers));
  std::size_t keep = 0;
  for (const Layer& l : layers)
    if (l.capture->output_grad.defined()) layer_norms(l, method, keep, total);
  return total;
}

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
                         const std::vector<LayerGrads>& grads, const Tensor* example_mask, Clipper& clipper,
                         std::int64_t n, Device dev) {
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
  std::int64_t n = 0;
  const std::vector<Layer> layers = captured_layers(model, n);
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
    if (opt.per_layer) {
      layer_sq[l] = Tensor::zeros({n}, DType::F32, dev);
      grads[l] = layer_norms(layers[l], opt.method, keep_bytes, layer_sq[l]);
      ops::add_inplace(total, layer_sq[l]);
    } else {
      grads[l] = layer_norms(layers[l], opt.method, keep_bytes, total);
    }
  }
  Clipper clipper(dev, n, mask, opt.per_layer ? layers.size() : 1);
  return opt.per_layer ? clip_per_layer(bounds, total, layer_sq, grads, example_mask, clipper, n, dev)
                       : clip_flat(opt, total, grads, clipper);
}

}  // namespace aegis::privacy
