// GraphModule: a model given as a list of steps over numbered values rather than as a fixed
// architecture — what an imported ONNX graph (nn/onnx_import.h) becomes. Each step runs one of
// the existing functional ops (nn/functional.h) on the tape, so forward without a tape, input
// gradients and parameter gradients work exactly as for the zoo's models. Convolutions and
// fully connected layers are child modules (Conv2d, Linear) holding the trainable parameters,
// named after the ONNX initializers ("layer1.0.conv1.weight" for a torch export); everything
// else (activations, pooling, padding, reshapes, residual additions, channel concatenation and fixed
// per-channel affine maps such as an input normalization or an unfolded BatchNorm) is a step
// without parameters. Grouped and depthwise convolutions run the grouped kernel
// (F::grouped_conv2d) with constant weights (their per-example gradients are not implemented, so
// training keeps them frozen); a dilated one runs as a dense convolution whose weight is zero
// outside the diagonal blocks (the same outputs up to summation order, at `groups` times the work).
// The per-channel affine steps run F::channel_affine: one multiply and one add per element.
// Every child layer is applied by exactly one step (add_step refuses a second use), and no step
// mixes examples: row i of each layer's output gradient is example i's own, which is what the
// per-example gradients of DP-SGD (privacy/per_example.h) rely on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace aegis::nn {

enum class GraphOp {
  Layer,  // a child module: Conv2d or Linear
  Relu,
  Sigmoid,
  Tanh,
  Softplus,
  MaxPool,
  AvgPool,
  Flatten,
  Reshape,        // to [N, shape...]
  Add,            // two values of one shape (a residual connection)
  ChannelAffine,  // y = x·scale[c] + shift[c] over dimension 1, constants
  Concat,         // along dimension 1
  FixedConv,      // a convolution with constant weights: grouped and depthwise convolutions
                  // (the grouped kernel; dilated ones as a block-diagonal dense weight)
  Pad,            // constant padding of H and W (zeros, or −∞ in front of a max pooling)
};

struct GraphStep {
  GraphOp op = GraphOp::Relu;
  std::string node;         // the source node's name, for messages
  std::vector<int> inputs;  // value indices
  int output = -1;
  std::shared_ptr<Module> layer;    // Layer
  Pool2dOptions pool{};             // MaxPool, AvgPool
  Pad2dOptions pad{};               // Pad
  Shape shape;                      // Reshape: the per-example target shape
  std::vector<float> scale, shift;  // ChannelAffine, one entry per channel; FixedConv: shift = bias
  std::vector<float> weight;        // FixedConv: the weight [O, C/groups, k, k]
  Shape weight_shape;               // FixedConv
  std::int64_t groups = 1;          // FixedConv: > 1 runs F::grouped_conv2d
  Conv2dOptions conv{};             // FixedConv
};

// Where an imported layer came from in its ONNX file, so that the trained model can be written
// back into the same graph (nn/onnx_export.h). Plain data: no protobuf types here.
struct OnnxLayerOrigin {
  std::string layer;           // the child module's name
  int node = -1;               // index of its Conv, Gemm or MatMul node in the graph
  std::string op_type;         // "Conv", "Gemm", "MatMul"
  std::string weight, bias;    // the node's weight and bias inputs ("" when it has no bias)
  bool weight_in_out = false;  // the ONNX weight is [in, out] (MatMul, Gemm with transB = 0)
  // The BatchNormalization/Add/Sub nodes folded into the layer at load: (node index, the input
  // that carries the layer's output).
  std::vector<std::pair<int, int>> absorbed;
};

struct OnnxOrigin {
  std::string path;  // the .onnx file the graph was read from ("" when read from bytes)
  int num_nodes = 0;
  std::vector<OnnxLayerOrigin> layers;
  int batch_norms = 0;    // BatchNormalization nodes, folded or run as fixed affine steps: frozen
  int grouped_convs = 0;  // grouped/depthwise convolutions: constants (FixedConv)
};

class GraphModule : public Module {
 public:
  // `input_shape` is one example's shape ({C, H, W}, or {D}); value 0 is the input.
  explicit GraphModule(Shape input_shape, std::string source = "graph");

  // Registers a Conv2d or Linear under `name` (dots allowed: "layer1.0.conv1").
  void add_layer(const std::string& name, std::shared_ptr<Module> layer);
  // Appends a step; its inputs must be values already produced. Returns its output's index.
  int add_step(GraphStep step);
  // Marks `value` (one example's shape `shape`, {K} for K classes) as the model's output.
  void set_output(int value, Shape shape);
  // Notes a final Softmax/LogSoftmax that forward() skips so that callers see logits.
  void set_skipped_final(const std::string& op) { m_skipped_final = op; }

  Var forward(const Var& x) override;
  std::string kind() const override { return "GraphModule"; }
  std::string describe() const override;

  const Shape& input_shape() const { return m_input_shape; }
  const Shape& output_shape() const { return m_output_shape; }
  std::int64_t num_classes() const { return m_output_shape.empty() ? 0 : m_output_shape[0]; }
  const std::vector<GraphStep>& steps() const { return m_steps; }
  const std::string& skipped_final() const { return m_skipped_final; }
  // The value set_output marked (−1 before), and the constant weight and bias step i runs with
  // (ChannelAffine: its scale and shift [C]; FixedConv: its dense weight and bias; undefined for
  // other steps and for a FixedConv without bias).
  int output_value() const { return m_output; }
  const Var& step_weight(std::size_t i) const { return m_affine_weight.at(i); }
  const Var& step_bias(std::size_t i) const { return m_affine_bias.at(i); }
  const std::string& source() const { return m_source; }
  // The ONNX file and node of each layer, for writing the model back (empty path: unknown).
  void set_onnx_origin(OnnxOrigin origin) { m_origin = std::move(origin); }
  const OnnxOrigin& onnx_origin() const { return m_origin; }

 private:
  Var run_step(const GraphStep& step, std::size_t index, const std::vector<Var>& values);
  void place_constants(Device device);

  Shape m_input_shape, m_output_shape;
  std::string m_source, m_skipped_final;
  std::vector<GraphStep> m_steps;
  OnnxOrigin m_origin;
  // Per ChannelAffine step its scale and shift [C] (F::channel_affine); per FixedConv step its
  // weight and bias; on m_constants_device. Undefined for other steps.
  std::vector<Var> m_affine_weight, m_affine_bias;
  Device m_constants_device = Device::cpu();
  std::vector<std::vector<int>> m_release_after;  // values whose last use is step i
  int m_num_values = 1;
  int m_output = -1;
};

}  // namespace aegis::nn
