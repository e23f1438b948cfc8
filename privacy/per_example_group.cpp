// Per-example norms when each example enters the batch as several copies (augmentation
// multiplicity, De, Berrada, Hayes, Smith, Balle 2022, "Unlocking high-accuracy differentially
// private image classification through scale", §3.1 and Alg. 1): the captured batch holds
// G = ClipOptions::group_size consecutive rows per example, and example b's gradient is the sum
// of its rows' gradients (the caller weights each copy's loss by 1/G, so the sum is the copies'
// average). That gradient, not the copies', is what gets clipped: one example still moves the
// clipped sum by at most C, so the sensitivity and the accounting are those of G = 1.
//
// The gradient of a group is Σ_k a_kᵀ g_k over the rows k of the group, which no one-row formula
// gives (‖Σ_k a_kᵀ g_k‖² has cross terms between the copies). So every layer's per-group
// gradient is formed explicitly, [B, params of the layer], and the norms and the clipped sums are
// read from it:
//   Linear      the [o, in] products G_bᵀ A_b of all groups (inner dimension G) as one batched
//               product (kernels/blas.h), the bias Σ_k g_k;
//   Conv2d      the per-row gradients (kernels/per_example.h, materialized), summed per group;
//   GroupNorm   the per-row affine gradients, summed per group.
// Every per-group sum is one batched product too, so a step issues a fixed number of calls per
// layer, independent of the batch size.
// Memory is B·(layer parameters) per layer plus, for a convolution, G·B·(its parameters) for the
// rows: the trainer bounds it by the examples it puts in one batch (privacy/dp_train.cpp).
#include <algorithm>
#include <vector>

#include "kernels/blas.h"
#include "kernels/per_example.h"
#include "nn/functional/conv_geometry.h"
#include "privacy/per_example.h"
#include "privacy/per_example_layers.h"
#include "runtime/dispatch.h"

namespace aegis::privacy::detail {

namespace {

// Device scratch for the conv kernels per call, as in privacy/per_example.cpp.
constexpr std::size_t kGroupWorkspaceBudget = std::size_t{256} << 20;

bool wants(const autograd::Var& p) {
  return p.defined() && p.requires_grad();
}

// rows [B·G, cols] → [B, cols], row b = Σ_k rows[b·G + k]: one batched product of the shared
// ones [1, G] with each group's [G, cols] block (stride 0 for the ones), so a layer issues one
// call whatever B is.
Tensor group_sums(const Tensor& rows, std::int64_t group) {
  const std::int64_t n = rows.size(0), cols = rows.numel() / std::max<std::int64_t>(n, 1);
  const std::int64_t groups = n / group;
  const Device dev = rows.device();
  Tensor out = Tensor::empty({groups, cols}, DType::F32, dev);
  const Tensor ones = Tensor::full({group}, 1.0f).to(dev);
  AEGIS_DISPATCH(
      dev, gemm_strided_batched(kernels::GemmArgs{false, false, 1, cols, group, 1.0f, 0.0f}, ones.data<float>(), 0,
                                rows.data<float>(), group * cols, out.data<float>(), cols, groups));
  return out;
}

}  // namespace

LayerGrads layer_norms_grouped(const Layer& layer, std::int64_t group, Tensor& sq_norms) {
  const nn::LayerCapture& c = *layer.capture;
  const Tensor& a = c.activation;
  const Tensor& g = c.output_grad;
  const Device dev = g.device();
  const std::int64_t rows = g.size(0), groups = rows / group;
  AEGIS_CHECK_AS(ShapeError, groups * group == rows && sq_norms.numel() == groups,
                 "per-example norms: layer '" << layer.name << "' captured " << rows << " rows, not "
                                              << sq_norms.numel() << " examples of " << group << " copies");
  float* out = sq_norms.data<float>();
  const bool want_w = wants(c.weight), want_b = wants(c.bias);
  LayerGrads r;
  r.layer = &layer;
  switch (c.op) {
    case nn::CaptureOp::Linear: {
      const std::int64_t in = a.size(1), o = g.size(1);
      if (want_w) {
        r.per_example_weight = Tensor::empty({groups, o * in}, DType::F32, dev);
        // G_bᵀ A_b: [o, G]·[G, in] for every group b, one batched product.
        AEGIS_DISPATCH(dev, gemm_strided_batched(kernels::GemmArgs{true, false, o, in, group, 1.0f, 0.0f},
                                                 g.data<float>(), group * o, a.data<float>(), group * in,
                                                 r.per_example_weight.data<float>(), o * in, groups));
      }
      if (want_b) r.per_example_bias = group_sums(g, group);
      break;
    }
    case nn::CaptureOp::Conv2d: {
      const kernels::Conv2dGeometry geo = nn::conv2d_geometry(a, c.weight.value(), c.conv);
      if (want_w) {
        const std::int64_t patch = geo.in_channels * geo.kernel_h * geo.kernel_w;
        Tensor per_row = Tensor::empty({rows, geo.out_channels * patch}, DType::F32, dev);
        Tensor row_sq = Tensor::zeros({rows}, DType::F32, dev);  // the copies' own norms, not used
        Tensor workspace;
        std::size_t ws_bytes = 0;
        if (dev.is_cuda() && rows > 0) {
          // The CUDA op works through the rows in rounds of workspace_bytes / per rows.
          const std::size_t per = kernels::conv2d_sq_norms_scratch_per_example(geo, false, true);
          if (per > 0) {
            const std::int64_t round = std::max<std::int64_t>(
                1, std::min<std::int64_t>(rows, static_cast<std::int64_t>(kGroupWorkspaceBudget / per)));
            ws_bytes = per * static_cast<std::size_t>(round);
            workspace = Tensor::empty({static_cast<std::int64_t>((ws_bytes + 3) / 4)}, DType::F32, dev);
          }
        }
        AEGIS_DISPATCH(dev, conv2d_sq_norms(geo, false, a.data<float>(), g.data<float>(), row_sq.data<float>(),
                                            per_row.data<float>(), workspace.defined() ? workspace.raw_data() : nullptr,
                                            ws_bytes));
        r.per_example_weight = group_sums(per_row, group);
      }
      if (want_b) {
        const std::int64_t plane = geo.out_height() * geo.out_width();
        Tensor per_row = Tensor::empty({rows, geo.out_channels}, DType::F32, dev);
        AEGIS_DISPATCH(dev,
                       conv_bias_per_example(g.data<float>(), rows, geo.out_channels, plane, per_row.data<float>()));
        r.per_example_bias = group_sums(per_row, group);
      }
      break;
    }
    case nn::CaptureOp::GroupNorm: {
      const std::int64_t ch = g.size(1), s = g.numel() / std::max<std::int64_t>(rows * ch, 1);
      Tensor w_rows = want_w ? Tensor::empty({rows, ch}, DType::F32, dev) : Tensor();
      Tensor b_rows = want_b ? Tensor::empty({rows, ch}, DType::F32, dev) : Tensor();
      AEGIS_DISPATCH(dev, group_norm_per_example(g.data<float>(), a.data<float>(), rows, ch, s,
                                                 want_w ? w_rows.data<float>() : nullptr,
                                                 want_b ? b_rows.data<float>() : nullptr));
      if (want_w) r.per_example_weight = group_sums(w_rows, group);
      if (want_b) r.per_example_bias = group_sums(b_rows, group);
      break;
    }
    case nn::CaptureOp::None:
      AEGIS_THROW(InvalidArgument, "per-example norms: layer '" << layer.name << "' has a capture of no known op");
  }
  for (const Tensor* t : {&r.per_example_weight, &r.per_example_bias})
    if (t->defined() && groups > 0)
      AEGIS_DISPATCH(dev, row_sq_norms(t->data<float>(), groups, t->numel() / groups, out));
  return r;
}

}  // namespace aegis::privacy::detail
