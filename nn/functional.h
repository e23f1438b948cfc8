// Differentiable ops on autograd Vars. Each validates its inputs (ShapeError naming the op and
// the offending shape), runs the forward kernel on the inputs' device, and records a backward
// closure only when some input requires a gradient. Weight and bias gradients are computed only
// when those Vars require them — an attack that differentiates w.r.t. the input alone pays for
// no weight-gradient product.
#pragma once

#include <cstdint>

#include "runtime/autograd.h"

namespace aegis::nn {

using autograd::Var;

struct Conv2dOptions {
  std::int64_t stride = 1;
  std::int64_t padding = 0;
  std::int64_t dilation = 1;  // spacing of the kernel taps (1: adjacent)
};

// What a layer with parameters keeps for per-example gradient work: the tensor its weight
// gradient is formed from (Linear/Conv2d: the layer input; GroupNorm: the normalized input)
// and the gradient w.r.t. the layer's output, both with the batch as dimension 0, plus which op
// captured them and its parameters. Filled during backward when `enabled`.
// With `skip_param_grads` the backward pass still forms the input gradient but no weight or bias
// gradient: DP-SGD replaces them by clipped sums formed from the capture (privacy/per_example.h).
// A layer captures once per backward pass; in that mode a second capture before the first is
// consumed (a layer applied twice in one graph) throws instead of silently losing a gradient.
enum class CaptureOp { None, Linear, Conv2d, GroupNorm };
struct LayerCapture {
  bool enabled = false;
  Tensor activation;
  Tensor output_grad;
  bool skip_param_grads = false;
  CaptureOp op = CaptureOp::None;
  Var weight{}, bias{};  // the op's parameters (either may be undefined)
  Conv2dOptions conv{};  // Conv2d only
  // Memory the per-example code keeps between steps (per-example gradients), so that each step
  // does not map and fault in fresh pages; clear() keeps it, release() drops it.
  Tensor scratch{};

  // Whether the op should skip its parameter gradients.
  bool skips_param_grads() const { return enabled && skip_param_grads; }
  // Called by an op's backward closure: records the pair when enabled.
  void record(CaptureOp kind, const Tensor& a, const Tensor& g, const Var& w, const Var& b, Conv2dOptions c = {}) {
    if (!enabled) return;
    AEGIS_CHECK(!(skip_param_grads && output_grad.defined()),
                "a layer captured twice without its capture being consumed: a layer applied twice in one graph is "
                "not supported by per-example clipping, and each backward pass needs "
                "privacy::clip_and_accumulate (or privacy::clear_captures) before the next");
    activation = a;
    output_grad = g;
    op = kind;
    weight = w;
    bias = b;
    conv = c;
  }
  void clear() {  // drops the captured tensors and parameters, keeps the flags and the scratch
    activation = Tensor();
    output_grad = Tensor();
    op = CaptureOp::None;
    weight = Var();
    bias = Var();
  }
  void release() {  // clear() and the scratch too
    clear();
    scratch = Tensor();
  }
};

struct Pool2dOptions {
  std::int64_t kernel = 2;
  std::int64_t stride = 2;
  std::int64_t padding = 0;
  // ceil instead of floor output size, dropping a last window that would start in the right/bottom
  // padding; average pooling: whether padded positions count in the divisor (kernels/pool.h).
  bool ceil_mode = false;
  bool count_include_pad = true;
};

// Constant padding of H and W: `top` rows above, `bottom` below, `left`/`right` columns, all ≥ 0.
struct Pad2dOptions {
  std::int64_t top = 0, left = 0, bottom = 0, right = 0;
  float value = 0.0f;
};

enum class Reduction { Mean, Sum, None };

namespace F {

// y[N,out] = x[N,in] · wᵀ[in,out] + b. `b` may be an undefined Var (no bias).
Var linear(const Var& x, const Var& w, const Var& b, LayerCapture* capture = nullptr);
// x [N,C,H,W], w [O,C,kh,kw], b [O] or undefined → y [N,O,H',W'],
// H' = (H + 2p − d·(kh − 1) − 1)/s + 1 (floor) with d the dilation, likewise W'.
Var conv2d(const Var& x, const Var& w, const Var& b, Conv2dOptions opt, LayerCapture* capture = nullptr);
// Grouped convolution (depthwise when groups = C): w [O, C/groups, kh, kw], output channel o
// reading only the C/groups input channels of its group (kernels/grouped_conv.h); dilation 1 only.
// No per-example capture: DP-SGD does not train grouped weights (imported ones are constants).
Var grouped_conv2d(const Var& x, const Var& w, const Var& b, Conv2dOptions opt, std::int64_t groups);
// y = x·scale[c] + shift[c] over dimension 1 of x [N, C, ...]; scale and shift are constants [C]
// on x's device (no gradient). An input normalization or a BatchNorm in inference form.
Var channel_affine(const Var& x, const Tensor& scale, const Tensor& shift);
Var relu(const Var& x);
Var tanh(const Var& x);
Var sigmoid(const Var& x);
// log(1 + e^x), computed stably; its derivative is sigmoid(x) (kernels/elementwise.h).
Var softplus(const Var& x);
// x [N,C,H,W]. Padding counts as −∞ for max pooling; average pooling divides by the window's
// size inside the padded input (count_include_pad, PyTorch's default) or by its real elements.
Var max_pool2d(const Var& x, Pool2dOptions opt);
Var avg_pool2d(const Var& x, Pool2dOptions opt);
// x [N,C,H,W] → [N,C,top+H+bottom,left+W+right] filled with opt.value around x; its gradient is
// the crop of the output gradient (kernels/pad.h).
Var pad2d(const Var& x, Pad2dOptions opt);
// The 2-d scattering transform with J scales and L orientations, as Kymatio's Scattering2D
// (kernels/scattering.h): x [N,C,H,W] → [N, C·K, H', W'] with K = 1 + JL + L²J(J−1)/2 and
// H' = (⌊(H + 2^J)/2^J⌋ + 1) − 2 (e.g. 81 × 7 × 7 per channel of a 28 × 28 image, J = 2, L = 8),
// channel c·K + k holding coefficient k of input channel c. Computed on the host; InvalidArgument
// for J ∉ [1, 6], L ∉ [1, 16] or an image smaller than 2^J.
Var scattering2d(const Var& x, int J, int L);
Shape scattering2d_shape(const Shape& input, int J, int L);
// x [N,C,...] split into `groups` groups of C/groups channels; per (example, group):
// x̂ = (x − μ)/sqrt(σ² + eps) with the biased variance; y = x̂·γ[c] + β[c].
// gamma/beta [C] or both undefined (no affine).
Var group_norm(const Var& x, std::int64_t groups, const Var& gamma, const Var& beta, float eps = 1e-5f,
               LayerCapture* capture = nullptr);
Var flatten(const Var& x);  // [N, d1, d2, ...] → [N, d1·d2·...]
Var reshape(const Var& x, const Shape& shape);  // a view; one -1 allowed
Var add(const Var& a, const Var& b);
// alpha·x for a finite alpha (InvalidArgument otherwise).
Var scale(const Var& x, float alpha);
// Fused, numerically stable softmax cross-entropy: loss_i = logsumexp(z_i) − z_i[y_i].
// logits [N,K] f32; labels [N] i32 in [0,K) on the same device. Mean/Sum give a [1] tensor,
// None gives [N].
Var cross_entropy(const Var& logits, const Tensor& labels, Reduction reduction = Reduction::Mean);

// Probability rows (kernels/softmax.h), all over f32 [rows, classes] with classes ≥ 1.
// softmax / log_softmax over dimension 1, computed stably from the row maximum.
Var softmax(const Var& x);
Var log_softmax(const Var& x);
// KL(p_r ‖ q_r) = Σ_j p_rj (log p_rj − log q_rj) per row, q given as log probabilities of p's shape:
// → [rows]. log p is taken at max(p, 1e-20), so a zero probability adds nothing.
Var kl_div(const Var& p, const Var& log_q);
// −Σ_j p_rj log p_rj per row (log at max(p, 1e-20)) → [rows].
Var entropy(const Var& p);
// x [B·G, C] → [B, C], row b the mean of rows b·G … b·G + G − 1 (ShapeError unless G divides the rows).
Var group_mean(const Var& x, std::int64_t group);
// x [B, C] → [B·G, C], each row G times in a row (the adjoint of the group sum).
Var repeat_rows(const Var& x, std::int64_t group);

// The consistency regularizer of randomized-smoothing training (Jeong & Shin 2020, "Consistency
// Regularization for Certified Robustness of Smoothed Classifiers", the loss L_con of their §3,
// which DP-CERT, Wu et al. 2024, "Augment then Smooth", adds to each example's DP-SGD loss):
// logits [B·K, C] hold K noisy copies of each of B examples as consecutive rows; with p_k the
// copies' softmax and p̄ = (1/K) Σ_k p_k,
//   R_b = lambda · (1/K) Σ_k KL(p̄ ‖ p_k) + eta · H(p̄)   → [B].
// R_b depends on example b's rows only, so its gradient stays inside that example's copies.
// lambda and eta must be finite and ≥ 0 (InvalidArgument); K ≥ 1 must divide the rows (ShapeError).
Var consistency_regularizer(const Var& logits, std::int64_t copies, float lambda, float eta);

}  // namespace F

// Index of the largest logit per row (first one on ties): logits [N,K] → i32 [N].
Tensor argmax(const Tensor& logits);
// Number of rows whose argmax equals the label.
std::int64_t count_correct(const Tensor& logits, const Tensor& labels);
// The same count as an int32 [1] tensor on the logits' device, without waiting for it: a training
// step reads it together with its loss, at one synchronization.
Tensor count_correct_on_device(const Tensor& logits, const Tensor& labels);

}  // namespace aegis::nn
