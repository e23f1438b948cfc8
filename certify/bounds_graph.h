// Internal to certify/bounds*.cpp: a supported model flattened into a graph of bound-propagation
// nodes, and the steps that act on it (certify/bounds.h describes the methods).
//
// Node i's value is a tensor [N, *shape] (one example's shape), its inputs have smaller indices,
// node 0 is the network input and the last node the logits. A Residual y = x + body(x) becomes
// the body's nodes followed by an Add node of (x, body output). Flatten becomes a Reshape node.
// Per call, a Box holds a node's interval [lower, upper] on the model's device; Lines holds an
// activation's enclosing lines per (example, neuron) on the host. A backward pass takes
// Λ [R, *shape_k] at node k, whose row r belongs to example r / S (S rows per example).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "certify/bounds.h"
#include "kernels/conv.h"
#include "kernels/elementwise.h"
#include "kernels/pool.h"

namespace aegis::certify::detail {

enum class NodeKind { Input, Linear, Conv2d, Activation, Reshape, AvgPool, Add };

struct Node {
  NodeKind kind = NodeKind::Input;
  std::vector<int> inputs;
  Shape shape;            // one example's shape
  std::int64_t size = 0;  // elements of one example
  std::string where;      // "layer '1.body.0' (Linear(8, 8))", for messages
  // Linear: weight [out, in]; Conv2d: weight [O, C, kh, kw]. bias [out] / [O] or undefined.
  Tensor weight, abs_weight, bias;
  Tensor bias_map;                   // Conv2d with a bias: [O·H'·W', 1], b[o] at each output
  kernels::Conv2dGeometry geometry;  // Conv2d; `batch` is set per call
  // Conv2d with stride 1, a square kernel and p ≤ k − 1: its adjoint as a forward convolution,
  // weight [C, O, k, k] = W transposed and flipped, padding k − 1 − p (bounds_linear.cpp).
  Tensor adjoint_weight;
  kernels::Conv2dGeometry adjoint_geometry;
  // Conv2d on small planes: the convolution as a dense matrix, [C·H·W, O·H'·W'] (row i = the
  // outputs of input element i), when that is small enough to beat the kernels (bounds_graph.cpp).
  Tensor dense_transposed;
  std::vector<float> row_norm;       // affine node reading the input: ‖W_i‖₂ per output element
  bool reads_input = false;          // affine node whose input is node 0 (through reshapes)
  kernels::Activation activation = kernels::Activation::ReLU;
  nn::Module* module = nullptr;  // AvgPool: the layer, run for its forward map
  kernels::Pool2dGeometry pool;  // AvgPool: its geometry (`batch` set per call), for the adjoint
};

struct Graph {
  std::vector<Node> nodes;
  Device device;
  const Node& output() const { return nodes.back(); }
};

// Flattens `model` for inputs of one-example shape `example_shape` (weights as they are, on
// `device`). InvalidArgument naming the first unsupported module, ShapeError when layer sizes do
// not fit together.
Graph build_graph(nn::Module& model, const Shape& example_shape, Device device);

struct Box {
  Tensor lower, upper;  // [N, *shape] on the graph's device
};

// The input set B of every example: its bounding box and, for "l2", the ball.
struct InputSet {
  bool l2 = false;
  double eps = 0.0;
  std::int64_t n = 0, d = 0;
  Tensor x0;                                     // [N, *shape] on the graph's device
  std::vector<float> x0_host, lo_host, hi_host;  // [N·d]: x0 and B's box
  Box box;                                       // B's box on the device
};
InputSet make_input_set(const Tensor& x0, const BoundOptions& options);

// Enclosing lines of an activation on its pre-activation box, per (example, neuron) [N·size]:
// lower_slope·z + lower_icpt ≤ f(z) ≤ upper_slope·z + upper_icpt for z in [l, u].
// with_icpt[e]: the neurons of example e with a nonzero intercept (for ReLU the unstable ones).
struct Lines {
  std::vector<float> lower_slope, lower_icpt, upper_slope, upper_icpt;
  std::vector<std::vector<std::int64_t>> with_icpt;
};
Lines relax(kernels::Activation f, const Box& pre, ReluRelaxation relu);
// Whether neuron j of some example is not decided by its box (it needs its own linear bound):
// for ReLU l < 0 < u, for Tanh/Sigmoid l < u.
std::vector<std::int64_t> undecided_neurons(kernels::Activation f, const Box& pre);

// IBP (Gowal et al. 2018, Eq. 6) of node i from its inputs' boxes; for "l2", an affine node
// reading the input is intersected with its exact ball bound.
Box interval_step(const Graph& g, int i, const std::vector<Box>& boxes, const InputSet& input);

// The rows a backward pass starts from at node k, on the device. Per example (shared = false):
// lambda [N·S, *shape_k], S = specs rows per example. Shared by every example (shared = true):
// lambda [R, *shape_k], and each example's rows are those R rows (S = R) or, when mirrored, those
// rows followed by their negations (S = 2R) — so that ±e_j cost one row until the first
// activation. The pass consumes lambda (it may work in place).
struct BackwardRows {
  Tensor lambda;
  std::int64_t specs = 0;  // per example only
  bool shared = false, mirrored = false;
};

// Lower bounds of Λ·z_k + 0 over the input set for every example's S rows, [N·S] in (example,
// row) order (CROWN backward pass, Zhang et al. 2018 Thm 3.2), `lines` of every activation node
// below k.
std::vector<double> backward_lower(const Graph& g, int k, BackwardRows rows, const std::vector<Lines>& lines,
                                   const InputSet& input);

// Host helpers: a copy of t on the CPU as floats; a device tensor from host floats.
std::vector<float> host_floats(const Tensor& t);
Tensor device_tensor(const std::vector<float>& values, const Shape& shape, Device device);
// box ∩ [lo, hi] elementwise (lo, hi on the host, box's layout).
void intersect(Box& box, const std::vector<float>& lo, const std::vector<float>& hi);

}  // namespace aegis::certify::detail
