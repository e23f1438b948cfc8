// Deterministic bounds on a classifier's outputs over a norm ball, and verified accuracy.
//
// Input set. Inputs live in [0, 1]; the set around an example x0 is
//   B = { x : ‖x − x0‖_p ≤ ε } ∩ [0, 1]^d,   p = ∞ ("linf") or 2 ("l2").
// Two methods bound every function of the network over B:
//  - Interval (IBP; Gowal et al. 2018, "On the effectiveness of interval bound propagation for
//    training verifiably robust models", Eq. 6): boxes pass through affine layers in
//    center/radius form, μ' = Wμ + b, r' = |W|r, and through monotone activations elementwise.
//    The starting box is B's bounding box [max(0, x0 − ε), min(1, x0 + ε)] (for L2 too); for
//    "l2" an affine layer reading the input is also bounded exactly over the ball,
//    Wx0 + b ± ε‖W_i‖₂ (the dual norm of each row), and the tighter of the two is kept.
//  - Linear (CROWN; Zhang et al. 2018, "Efficient Neural Network Robustness Certification with
//    General Activation Functions", Thm 3.2 and §3.3): a linear function Λz of a layer's value z
//    is bounded below by passing Λ backward through the network — affine layers exactly
//    (Λ ← ΛW, constant += Λb), each activation through a pair of lines that enclose it on its
//    pre-activation interval [l, u] (Λ's positive entries take the lower line, its negative
//    entries the upper one) — down to the input, where min over B of Λx + c is concretized:
//      "linf": Σ_j min(Λ_j l_j, Λ_j u_j) + c over B's box (exact: B is that box);
//      "l2":   max(Λx0 − ε‖Λ‖₂, the box value) + c (the ball alone, the box alone: both
//              contain B; the ball ∩ box minimum itself is not formed).
//    ReLU lines (Zhang et al. 2018; Wong & Kolter 2018, "Provable defenses against adversarial
//    examples via the convex outer adversarial polytope", the ReLU relaxation and Thm 1): with
//    l < 0 < u, the upper line is the chord u(z − l)/(u − l) and the lower line αz, where
//    α = 1 if u ≥ −l else 0 (ReluRelaxation::Adaptive, CROWN) or α = u/(u − l)
//    (ReluRelaxation::WongKolter, the slope of Wong & Kolter's dual network, whose bound J(ν)
//    of Thm 1 this then is, up to the box clipping); stable neurons are exact. Tanh/Sigmoid
//    lines: see bounds_relax.cpp. Every activation's pre-activation bounds come from the same
//    backward pass started at that layer (for the neurons that IBP leaves undecided; a single
//    affine layer of the input, which IBP bounds exactly, is not repeated), intersected with
//    the IBP box, layer by layer; the final bounds are intersected with IBP's too, so Linear is
//    never looser than Interval.
// Specification. `margin_lower_bounds` bounds z_y − z_c for every c ≠ y directly, by passing the
// rows e_y − e_c backward (Linear), or by folding them into the last Linear layer before
// applying the box (Interval; Gowal et al. 2018 elide the last layer this way). Both are
// tighter than subtracting logit bounds. An example is verified at ε when every such lower bound
// is > 0.
//
// Supported models: nn::Sequential (nested) of nn::Linear, nn::Conv2d, ReLU/Tanh/Sigmoid
// (nn::ActivationLayer), nn::Flatten, nn::AvgPool2d, nn::MaxPool2d (the DeepPoly max relaxation,
// bounds_relax_pool.cpp) and nn::Residual (nn/residual.h). Any other module — GroupNorm, a
// Module with its own forward such as the zoo's resnet20 — gives
// InvalidArgument naming the layer's kind and its position (its dotted parameter-name prefix).
// An imported ONNX model (nn::GraphModule) is supported step by step: Linear/Conv2d layers,
// grouped convolutions, per-channel affine maps, ReLU/Tanh/Sigmoid, Flatten/Reshape, AvgPool,
// MaxPool (the DeepPoly max relaxation, bounds_relax_pool.cpp), Add of any two values and Concat;
// a step it cannot follow gives Unsupported naming the ONNX node (certify/bounds_graph_module.cpp).
// The arithmetic is float32 (matrix products on the model's device through the BLAS and
// convolution kernels; the per-neuron relaxation and concretization steps on the host) without
// directed rounding, so a bound can be off by float rounding, as in the papers' implementations.
// Memory: a backward pass holds Λ [rows, layer size] for a few layers at once; the rows of one
// pass (examples × specifications) are split into chunks of at most kMaxLambdaElements per layer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/norm.h"
#include "nn/data/dataset.h"
#include "nn/module.h"
#include "runtime/tensor.h"

namespace aegis::certify {

enum class BoundMethod { Interval, Linear };  // IBP, CROWN-style linear bound
enum class ReluRelaxation { Adaptive, WongKolter };

// "ibp" | "crown" (also "linear"); InvalidArgument otherwise.
BoundMethod parse_bound_method(const std::string& name);
const char* bound_method_name(BoundMethod method);  // "ibp" | "crown"
// "adaptive" | "wong-kolter"; InvalidArgument otherwise.
ReluRelaxation parse_relu_relaxation(const std::string& name);
const char* relu_relaxation_name(ReluRelaxation relu) noexcept;

struct BoundOptions {
  Norm norm = Norm::Linf;
  double eps = 0.0;  // ball radius in [0, 1] pixel units; ≥ 0 and finite
  BoundMethod method = BoundMethod::Linear;
  ReluRelaxation relu = ReluRelaxation::Adaptive;  // Linear only
};

// Λ elements one backward pass may hold per layer before its rows are split into chunks.
constexpr std::int64_t kMaxLambdaElements = std::int64_t{1} << 20;

struct OutputBounds {
  Tensor lower, upper;  // f32 [N, K] on the CPU
};

// Bounds on the logits over the ball around each row of x (f32 [N, ...] in [0, 1], any device;
// the work runs on the device of the model's parameters). The model runs in evaluation mode with
// its parameters frozen, both restored afterwards.
OutputBounds output_bounds(nn::Module& model, const Tensor& x, const BoundOptions& options);

// Lower bounds on z_y − z_c for labels y (i32 [N] in [0, K), any device): f32 [N, K] on the
// CPU with +∞ at c = y, so that a row's minimum is its smallest margin bound.
Tensor margin_lower_bounds(nn::Module& model, const Tensor& x, const Tensor& labels, const BoundOptions& options);

// Lower bounds of spec_m·z over the box [lower, upper] for every row spec_m of `spec` (f32 [M, K],
// K the model's outputs): a general linear output specification over a general input box (lower,
// upper: f32 one example's shape, any finite values with lower ≤ upper, not only [0, 1]; any
// device). Interval folds each row into a final Linear layer (as margin_lower_bounds does);
// Linear passes the rows backward and keeps the larger of its bound and the interval one.
// [M] on the host.
std::vector<double> spec_lower_bounds(nn::Module& model, const Tensor& lower, const Tensor& upper, const Tensor& spec,
                                      BoundMethod method, ReluRelaxation relu = ReluRelaxation::Adaptive);

// Throws InvalidArgument naming the first module that bound propagation does not support
// (checked again by every call above; this form checks a model without any input).
void check_supported(const nn::Module& model);

struct VerifyResult {
  double clean_accuracy = 0.0;     // fraction predicted correctly at x
  double verified_accuracy = 0.0;  // fraction correct and verified at ε
  std::int64_t total = 0;
  Tensor verified;      // i32 [total] on the CPU: 1 where the example is correct and verified
  Tensor margin_lower;  // f32 [total] on the CPU: min over c ≠ y of the bound on z_y − z_c (+∞: K = 1)
  double seconds = 0.0;
  // Parameters holding NaN or Inf (nn::non_finite_parameters). When there are any, no example is
  // verified: bounds computed from them mean nothing.
  std::vector<std::string> non_finite_parameters;
};

// Verified accuracy of `model` on (x, labels), in batches of batch_size rows; on_batch(done,
// total) after each batch.
VerifyResult verify(nn::Module& model, const Tensor& x, const Tensor& labels, const BoundOptions& options,
                    std::int64_t batch_size = 256,
                    const std::function<void(std::int64_t done, std::int64_t total)>& on_batch = {});
VerifyResult verify(nn::Module& model, const nn::Dataset& data, const BoundOptions& options,
                    std::int64_t batch_size = 256,
                    const std::function<void(std::int64_t done, std::int64_t total)>& on_batch = {});

}  // namespace aegis::certify
