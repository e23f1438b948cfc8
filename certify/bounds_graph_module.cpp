// An imported ONNX model (nn::GraphModule) as bound-propagation nodes: each step up to the
// model's output becomes the node that computes the same function —
//   Layer (Linear / Conv2d) -> Linear / Conv2d node with the layer's weights;
//   FixedConv (grouped, depthwise) -> Conv2d node with the dense block-diagonal constant weight
//                (expanded here from the grouped weight [O, C/G, k, k]);
//   ChannelAffine -> ChannelAffine node (x·scale[c] + shift[c], bounds_interval.cpp and
//                    bounds_linear.cpp);
//   Relu / Sigmoid / Tanh -> Activation;  Flatten / Reshape -> Reshape;  AvgPool -> AvgPool;
//   MaxPool -> MaxPool (bounds_relax_pool.cpp);  Add -> Add of any two earlier nodes;
//   Concat -> Concat (along the channels).
// Values no later step reads still get nodes; a backward pass skips them (no Λ reaches them).
#include <typeinfo>

#include "certify/bounds_graph.h"
#include "nn/graph_module.h"
#include "nn/layers.h"

namespace aegis::certify::detail {

namespace {

constexpr const char* kSupportedSteps =
    "Gemm/MatMul (Linear), Conv (also grouped and depthwise), Relu, Sigmoid, Tanh, MaxPool, AveragePool, "
    "Flatten, Reshape, Add, per-channel affine maps (Sub/Div/Mul/Add by constants, BatchNormalization) and "
    "Concat";

const char* op_name(nn::GraphOp op) {
  switch (op) {
    case nn::GraphOp::Layer:
      return "layer";
    case nn::GraphOp::Relu:
      return "Relu";
    case nn::GraphOp::Sigmoid:
      return "Sigmoid";
    case nn::GraphOp::Tanh:
      return "Tanh";
    case nn::GraphOp::Softplus:
      return "Softplus";
    case nn::GraphOp::Pad:
      return "Pad";
    case nn::GraphOp::MaxPool:
      return "MaxPool";
    case nn::GraphOp::AvgPool:
      return "AveragePool";
    case nn::GraphOp::Flatten:
      return "Flatten";
    case nn::GraphOp::Reshape:
      return "Reshape";
    case nn::GraphOp::Add:
      return "Add";
    case nn::GraphOp::ChannelAffine:
      return "per-channel affine";
    case nn::GraphOp::Concat:
      return "Concat";
    case nn::GraphOp::FixedConv:
      return "grouped Conv";
  }
  return "unknown";
}

std::string where(const nn::GraphStep& s) {
  std::string w = "ONNX node '" + s.node + "' (" + op_name(s.op);
  if (s.op == nn::GraphOp::Layer && s.layer) w += ": " + s.layer->describe();
  return w + ")";
}

const nn::GraphModule& as_graph(const nn::Module& m) {
  return dynamic_cast<const nn::GraphModule&>(m);
}

// The steps the output depends on are steps [0, output): step i writes value i + 1.
std::size_t steps_used(const nn::GraphModule& g) {
  return g.output_value() < 1 ? 0 : static_cast<std::size_t>(g.output_value());
}

bool supported_layer(const nn::GraphStep& s) {
  return s.layer && (typeid(*s.layer) == typeid(nn::Linear) || typeid(*s.layer) == typeid(nn::Conv2d));
}

Tensor value_or_none(const autograd::Var& v) {
  return v.defined() ? v.value() : Tensor();
}

// A grouped convolution's weight [O, C/G, k, k] as the dense [O, C, k, k] one that computes the
// same map: zero outside the diagonal blocks (output channel o reads the C/G channels of group
// o / (O/G)). On the weight's device.
Tensor dense_weight(const Tensor& grouped, std::int64_t groups) {
  if (groups <= 1) return grouped;
  const std::vector<float> v = grouped.to(Device::cpu()).to_vector<float>();
  const std::int64_t out_c = grouped.size(0), cg = grouped.size(1), kk = grouped.size(2) * grouped.size(3);
  const std::int64_t in_c = cg * groups, og = out_c / groups;
  std::vector<float> dense(static_cast<std::size_t>(out_c * in_c * kk), 0.0f);
  for (std::int64_t o = 0; o < out_c; ++o)
    for (std::int64_t ci = 0; ci < cg; ++ci)
      for (std::int64_t t = 0; t < kk; ++t)
        dense[static_cast<std::size_t>((o * in_c + (o / og) * cg + ci) * kk + t)] =
            v[static_cast<std::size_t>((o * cg + ci) * kk + t)];
  return Tensor::from_vector(dense, {out_c, in_c, grouped.size(2), grouped.size(3)}).to(grouped.device());
}

}  // namespace

void check_graph_module(const nn::Module& model) {
  const nn::GraphModule& g = as_graph(model);
  AEGIS_CHECK_AS(Unsupported, g.output_value() >= 1,
                 model.describe() << ": bound propagation needs an output computed by the graph");
  for (std::size_t i = 0; i < steps_used(g); ++i) {
    const nn::GraphStep& s = g.steps()[i];
    AEGIS_CHECK_AS(Unsupported,
                   (s.op != nn::GraphOp::Layer || supported_layer(s)) && s.op != nn::GraphOp::Softplus &&
                       s.op != nn::GraphOp::Pad,
                   "bound propagation does not support " << where(s) << " of " << model.describe()
                                                         << "; supported steps: " << kSupportedSteps);
  }
}

int add_graph_module(GraphBuilder& b, const nn::Module& model, int in) {
  check_graph_module(model);
  const nn::GraphModule& g = as_graph(model);
  const std::size_t used = steps_used(g);
  std::vector<int> node_of(used + 1, -1);  // value -> node
  node_of[0] = in;
  for (std::size_t i = 0; i < used; ++i) {
    const nn::GraphStep& s = g.steps()[i];
    const std::string w = where(s);
    const int a = node_of[static_cast<std::size_t>(s.inputs[0])];
    int out = -1;
    switch (s.op) {
      case nn::GraphOp::Layer:
        if (typeid(*s.layer) == typeid(nn::Linear)) {
          const auto& l = static_cast<const nn::Linear&>(*s.layer);
          out = b.linear(l.weight().value(), value_or_none(l.bias()), a, w);
        } else {
          const auto& c = static_cast<const nn::Conv2d&>(*s.layer);
          out = b.conv(c.weight().value(), value_or_none(c.bias()), c.options(), a, w);
        }
        break;
      case nn::GraphOp::FixedConv:
        out = b.conv(dense_weight(g.step_weight(i).value(), s.groups), value_or_none(g.step_bias(i)), s.conv, a, w);
        break;
      case nn::GraphOp::ChannelAffine:
        out = b.channel_affine(s.scale, s.shift, a, w);
        break;
      case nn::GraphOp::Relu:
        out = b.activation(kernels::Activation::ReLU, a, w);
        break;
      case nn::GraphOp::Sigmoid:
        out = b.activation(kernels::Activation::Sigmoid, a, w);
        break;
      case nn::GraphOp::Tanh:
        out = b.activation(kernels::Activation::Tanh, a, w);
        break;
      case nn::GraphOp::Flatten:
        out = b.reshape({shape_numel(b.shape_of(a))}, a, w);
        break;
      case nn::GraphOp::Reshape:
        out = b.reshape(s.shape, a, w);
        break;
      case nn::GraphOp::AvgPool:
        out = b.avg_pool(s.pool, a, w);
        break;
      case nn::GraphOp::MaxPool:
        out = b.max_pool(s.pool, a, w);
        break;
      case nn::GraphOp::Add:
        out = b.add(a, node_of[static_cast<std::size_t>(s.inputs[1])], w);
        break;
      case nn::GraphOp::Concat: {
        std::vector<int> ins;
        for (int v : s.inputs) ins.push_back(node_of[static_cast<std::size_t>(v)]);
        out = b.concat(ins, w);
        break;
      }
      case nn::GraphOp::Softplus:
      case nn::GraphOp::Pad:
        AEGIS_THROW(Unsupported, "bound propagation does not support " << where(s));  // check_graph_module refused it

    }
    node_of[static_cast<std::size_t>(s.output)] = out;
  }
  return node_of[used];
}

}  // namespace aegis::certify::detail
