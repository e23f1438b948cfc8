// Book-keeping per-example clipping (privacy/per_example.h): per-layer norm pieces, clip factors
// and clipped sums, dispatched to kernels/per_example.h on the captures' device.
#include "privacy/per_example.h"
#include "privacy/per_example_layers.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "kernels/blas.h"
#include "kernels/conv.h"
#include "kernels/per_example.h"
#include "nn/graph_module.h"
#include "nn/functional/conv_geometry.h"
#include "runtime/dispatch.h"
#include "runtime/ops.h"

namespace aegis::privacy {

namespace detail {

using autograd::Var;
using nn::CaptureOp;
using nn::LayerCapture;

// Device scratch for the conv norm kernels, per call (they process examples in rounds that fit).
constexpr std::size_t kConvWorkspaceBudget = std::size_t{256} << 20;

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

}  // namespace detail

using namespace detail;

void enable_per_example_capture(nn::Module& model, bool on) {
  // An imported graph (nn::GraphModule) is exact here: it applies each child layer once (add_step
  // refuses a second use), its other steps have no parameters (fixed affine maps, frozen
  // BatchNorm and grouped convolutions are constants) and none mixes the examples of a batch, so
  // every parameter's per-example gradient is its layer's a_iᵀg_i (tests/test_onnx_train.cpp
  // checks it against batch-size-1 gradients). The first condition is checked again here, where
  // the clipping's exactness depends on it.
  if (const auto* graph = dynamic_cast<const nn::GraphModule*>(&model); on && graph != nullptr) {
    std::vector<const nn::Module*> applied;
    for (const nn::GraphStep& step : graph->steps()) {
      if (step.op != nn::GraphOp::Layer) continue;
      for (const nn::Module* seen : applied)
        AEGIS_CHECK(seen != step.layer.get(), "per-example gradients: node '" << step.node << "' of " << graph->source()
                                                                              << " applies a layer a second time");
      applied.push_back(step.layer.get());
    }
  }
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

}  // namespace aegis::privacy
