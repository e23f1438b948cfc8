// Internal to certify/bounds*.cpp: a supported model flattened into a graph of bound-propagation
// nodes, and the steps that act on it (certify/bounds.h describes the methods).
//
// Node i's value is a tensor [N, *shape] (one example's shape), its inputs have smaller indices,
// node 0 is the network input and the last node the logits. The nodes form a DAG: a node may feed
// several later nodes (a backward pass sums the Λ its consumers pass down). A Residual
// y = x + body(x) becomes the body's nodes followed by an Add node of (x, body output). Flatten
// becomes a Reshape node. An imported ONNX model (nn::GraphModule) maps step by step
// (bounds_graph_module.cpp).
// Per call, a Box holds a node's interval [lower, upper] on the model's device; Lines holds an
// activation's enclosing lines per (example, neuron) on the host. A backward pass takes
// Λ [R, *shape_k] at node k, whose row r belongs to example r / S (S rows per example).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "certify/bounds.h"
#include "kernels/conv.h"
#include "kernels/elementwise.h"
#include "kernels/pool.h"
#include "nn/functional.h"

namespace aegis::certify::detail {

enum class NodeKind { Input, Linear, Conv2d, Activation, Reshape, AvgPool, Add, ChannelAffine, Concat, MaxPool };

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
  std::vector<float> row_norm;  // affine node reading the input: ‖W_i‖₂ per output element
  bool reads_input = false;     // affine node whose input is node 0 (through reshapes)
  kernels::Activation activation = kernels::Activation::ReLU;
  kernels::Pool2dGeometry pool;  // AvgPool, MaxPool: the geometry (`batch` set per call)
  // ChannelAffine z = a·scale + shift per element of one example [size] (the per-channel
  // constants repeated over each channel's plane).
  std::vector<float> scale, shift;
  // Concat: the elements each input contributes per channel block: input i holds C_i·R of every
  // example's values, placed one input after the other (concatenation along the channels).
  std::vector<std::int64_t> blocks;
};

struct Graph {
  std::vector<Node> nodes;
  Device device;
  const Node& output() const { return nodes.back(); }
};

// Builds a Graph node by node; every method returns the new node's index and checks that the
// shapes fit (ShapeError naming `where`).
class GraphBuilder {
 public:
  explicit GraphBuilder(Device device);
  int input(const Shape& shape);
  const Shape& shape_of(int i) const;
  // weight [out, in], bias [out] or undefined.
  int linear(const Tensor& weight, const Tensor& bias, int in, const std::string& where);
  // weight [O, C, kh, kw], bias [O] or undefined.
  int conv(const Tensor& weight, const Tensor& bias, const nn::Conv2dOptions& options, int in,
           const std::string& where);
  int activation(kernels::Activation f, int in, const std::string& where);
  int reshape(const Shape& shape, int in, const std::string& where);
  int avg_pool(const nn::Pool2dOptions& options, int in, const std::string& where);
  int max_pool(const nn::Pool2dOptions& options, int in, const std::string& where);
  int add(int a, int b, const std::string& where);
  // scale, shift: one per channel (dimension 0 of one example).
  int channel_affine(const std::vector<float>& scale, const std::vector<float>& shift, int in,
                     const std::string& where);
  int concat(const std::vector<int>& inputs, const std::string& where);
  Graph finish();

 private:
  int push(Node n);
  Node make(NodeKind kind, std::vector<int> inputs, Shape shape, const std::string& where) const;
  bool is_input(int i) const;
  void set_weights(Node& n, const Tensor& w, const Tensor& b);
  kernels::Pool2dGeometry pool_geometry(const nn::Pool2dOptions& options, int in, const std::string& where) const;

  std::vector<Node> m_nodes;
  Device m_device;
};

// Flattens `model` for inputs of one-example shape `example_shape` (weights as they are, on
// `device`). InvalidArgument naming the first unsupported module, ShapeError when layer sizes do
// not fit together.
Graph build_graph(nn::Module& model, const Shape& example_shape, Device device);

// Appends the steps of an imported ONNX model (nn::GraphModule) to `b`, reading node `in`
// (bounds_graph_module.cpp); returns the node of its output. Unsupported naming the ONNX node of
// a step that bound propagation does not handle.
int add_graph_module(GraphBuilder& b, const nn::Module& graph, int in);
// Throws Unsupported naming the first step of an imported model that bound propagation does
// not handle, and the steps it does.
void check_graph_module(const nn::Module& graph);

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
  // MaxPool, per (example, output) [N·size]: z ≥ a[lower_index] and z ≤ a[upper_index], or
  // z ≤ upper_icpt where upper_index < 0 (relax_max_pool; indices within one example's input).
  std::vector<std::int64_t> lower_index, upper_index;
};
Lines relax(kernels::Activation f, const Box& pre, ReluRelaxation relu);
// MaxPool lines on the input's box (DeepPoly, Singh et al. 2019, "An abstract domain for
// certifying neural networks", §4.4): the lower line is the window element with the largest lower
// bound, the upper line that element when its lower bound is ≥ every other element's upper
// bound (the maximum is then that element), else the constant max of the upper bounds.
Lines relax_max_pool(const Node& pool, const Box& pre);
// The input elements of a MaxPool whose window the box does not decide (as above).
std::vector<std::int64_t> undecided_pool_inputs(const Node& pool, const Box& pre);

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

// Lower bounds of spec(e, s)·z_k for every example e and spec s < specs, in (e, s) order;
// fill(e, s, row) writes row [size_k] (zeroed before). The specs are split into chunks so that no
// layer's Λ exceeds kMaxLambdaElements (bounds.cpp).
using SpecFill = std::function<void(std::int64_t e, std::int64_t s, float* row)>;
std::vector<double> spec_lower(const Graph& g, int k, std::int64_t specs, const SpecFill& fill,
                               const std::vector<Lines>& lines, const InputSet& in);

// Every node's box and, for the Linear method, every activation's (and max pooling's) lines, node
// by node (bounds.cpp).
struct Propagation {
  std::vector<Box> boxes;
  std::vector<Lines> lines;
};
Propagation propagate(const Graph& g, const InputSet& in, const BoundOptions& o);

// The input set of one box [lower, upper] per example (f32 [N, ...] on the graph's device; any
// values with lower ≤ upper, not only [0, 1]); as make_input_set with no ball.
InputSet make_box_input_set(const Tensor& lower, const Tensor& upper);

// Host helpers: a copy of t on the CPU as floats; a device tensor from host floats.
std::vector<float> host_floats(const Tensor& t);
Tensor device_tensor(const std::vector<float>& values, const Shape& shape, Device device);
// box ∩ [lo, hi] elementwise (lo, hi on the host, box's layout).
void intersect(Box& box, const std::vector<float>& lo, const std::vector<float>& hi);

}  // namespace aegis::certify::detail
