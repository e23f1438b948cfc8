#include "nn/graph_module.h"

#include <sstream>

namespace aegis::nn {

namespace {

// Concatenation along dimension 1 of tensors [N, C_i, rest...] with equal N and rest: for each
// example the inputs' blocks of C_i·R contiguous values are copied one after another (R = the
// product of the rest). The gradient of each input is the matching block of the output gradient.
Var concat_channels(const std::vector<Var>& xs) {
  const Tensor& first = xs.front().value();
  AEGIS_CHECK_AS(ShapeError, first.dim() >= 2, "concat: needs [N, C, ...] inputs, got " << first.describe());
  const std::int64_t n = first.size(0);
  const std::int64_t rest = first.numel() / (n * first.size(1) > 0 ? n * first.size(1) : 1);
  std::int64_t channels = 0;
  for (const Var& x : xs) {
    const Tensor& v = x.value();
    Shape a(v.shape()), b(first.shape());
    a.erase(a.begin() + 1);
    b.erase(b.begin() + 1);
    AEGIS_CHECK_AS(ShapeError, a == b && v.device() == first.device() && v.dtype() == DType::F32,
                   "concat: inputs " << first.describe() << " and " << v.describe() << " differ outside dimension 1");
    channels += v.size(1);
  }
  Shape out_shape(first.shape());
  out_shape[1] = channels;
  Tensor y = Tensor::empty(out_shape, DType::F32, first.device());
  // Copies block [offset, offset + c) of every example between `whole` [N, channels·R] and
  // `part` [N, c·R].
  auto copy_blocks = [n, rest, channels](const Tensor& whole, const Tensor& part, std::int64_t offset, std::int64_t c,
                                         bool into_whole) {
    for (std::int64_t i = 0; i < n; ++i) {
      Tensor w = whole.rows(i, i + 1).reshape({channels, rest}).rows(offset, offset + c);
      Tensor p = part.rows(i, i + 1).reshape({c, rest});
      if (into_whole)
        w.copy_from(p);
      else
        p.copy_from(w);
    }
  };
  std::int64_t offset = 0;
  for (const Var& x : xs) {
    copy_blocks(y, x.value(), offset, x.value().size(1), true);
    offset += x.value().size(1);
  }
  return autograd::make_result(std::move(y), xs, "concat", [xs, copy_blocks](const Tensor& gy) {
    std::int64_t at = 0;
    for (const Var& x : xs) {
      const std::int64_t c = x.value().size(1);
      if (x.requires_grad()) {
        Tensor gx = Tensor::empty_like(x.value());
        copy_blocks(gy, gx, at, c, false);
        x.accumulate_grad_owned(std::move(gx));
      }
      at += c;
    }
  });
}

}  // namespace

GraphModule::GraphModule(Shape input_shape, std::string source)
    : m_input_shape(std::move(input_shape)), m_source(std::move(source)) {}

void GraphModule::add_layer(const std::string& name, std::shared_ptr<Module> layer) {
  AEGIS_CHECK(layer != nullptr, "GraphModule::add_layer: null layer '" << name << "'");
  for (const auto& [existing, child] : children())
    AEGIS_CHECK(existing != name, "GraphModule::add_layer: a layer named '" << name << "' exists already");
  register_module(name, std::move(layer));
}

int GraphModule::add_step(GraphStep step) {
  for (int v : step.inputs)
    AEGIS_CHECK(v >= 0 && v < m_num_values,
                "GraphModule: step '" << step.node << "' reads value " << v << ", which no earlier step produced");
  AEGIS_CHECK(!step.inputs.empty(), "GraphModule: step '" << step.node << "' has no input");
  if (step.op == GraphOp::Layer) {
    // A layer applied twice would capture only one use's activation and output gradient, and its
    // per-example gradients (privacy/per_example.h) would miss the other use: refused here.
    bool registered = false;
    for (const auto& [name, child] : children()) registered = registered || child == step.layer;
    AEGIS_CHECK(step.layer != nullptr && registered,
                "GraphModule: step '" << step.node << "' applies a layer that add_layer did not register");
    for (const GraphStep& earlier : m_steps)
      AEGIS_CHECK(earlier.op != GraphOp::Layer || earlier.layer != step.layer,
                  "GraphModule: step '" << step.node << "' applies the layer of step '" << earlier.node
                                        << "' a second time; each layer may be applied once per forward pass "
                                           "(give the second use its own copy of the weights)");
  }
  Var weight, bias;
  if (step.op == GraphOp::ChannelAffine) {
    const auto c = static_cast<std::int64_t>(step.scale.size());
    AEGIS_CHECK(c > 0 && step.shift.size() == step.scale.size() && (step.shape.size() == 1 || step.shape.size() == 3) &&
                    step.shape[0] == c,
                "GraphModule: affine step '" << step.node << "' has " << c << " scales and " << step.shift.size()
                                             << " shifts for inputs " << shape_str(step.shape));
    // F::channel_affine's scale and shift, on the constants' device.
    weight = Var(Tensor::from_vector(step.scale, {c}).to(m_constants_device));
    bias = Var(Tensor::from_vector(step.shift, {c}).to(m_constants_device));
  }
  if (step.op == GraphOp::FixedConv) {
    AEGIS_CHECK(step.weight_shape.size() == 4 &&
                    static_cast<std::int64_t>(step.weight.size()) == shape_numel(step.weight_shape) &&
                    (step.shift.empty() || static_cast<std::int64_t>(step.shift.size()) == step.weight_shape[0]),
                "GraphModule: convolution step '" << step.node << "' has " << step.weight.size() << " weights for "
                                                  << shape_str(step.weight_shape) << " and " << step.shift.size()
                                                  << " biases");
    weight = Var(Tensor::from_vector(step.weight, step.weight_shape).to(m_constants_device));
    if (!step.shift.empty()) bias = Var(Tensor::from_vector(step.shift, {step.weight_shape[0]}).to(m_constants_device));
    step.weight = {};  // the tensor holds them now
  }
  m_affine_weight.push_back(weight);
  m_affine_bias.push_back(bias);
  step.output = m_num_values++;
  m_steps.push_back(std::move(step));
  return m_steps.back().output;
}

void GraphModule::set_output(int value, Shape shape) {
  AEGIS_CHECK(value >= 0 && value < m_num_values, "GraphModule: output value " << value << " does not exist");
  m_output = value;
  m_output_shape = std::move(shape);
  // Each intermediate value is dropped after the last step that reads it, so that a deep graph
  // keeps no more activations alive than the layers of the zoo do (the tape keeps what backward needs).
  std::vector<int> last_use(static_cast<std::size_t>(m_num_values), -1);
  for (std::size_t i = 0; i < m_steps.size(); ++i)
    for (int v : m_steps[i].inputs) last_use[static_cast<std::size_t>(v)] = static_cast<int>(i);
  m_release_after.assign(m_steps.size(), {});
  for (int v = 0; v < m_num_values; ++v)
    if (v != m_output && last_use[static_cast<std::size_t>(v)] >= 0)
      m_release_after[static_cast<std::size_t>(last_use[static_cast<std::size_t>(v)])].push_back(v);
}

void GraphModule::place_constants(Device device) {
  for (Var& w : m_affine_weight)
    if (w.defined()) w.mutable_value() = w.value().to(device);
  for (Var& b : m_affine_bias)
    if (b.defined()) b.mutable_value() = b.value().to(device);
  m_constants_device = device;
}

Var GraphModule::run_step(const GraphStep& step, std::size_t index, const std::vector<Var>& values) {
  const Var& x = values[static_cast<std::size_t>(step.inputs[0])];
  switch (step.op) {
    case GraphOp::Layer:
      return step.layer->forward(x);
    case GraphOp::Relu:
      return F::relu(x);
    case GraphOp::Sigmoid:
      return F::sigmoid(x);
    case GraphOp::Tanh:
      return F::tanh(x);
    case GraphOp::Softplus:
      return F::softplus(x);
    case GraphOp::MaxPool:
      return F::max_pool2d(x, step.pool);
    case GraphOp::AvgPool:
      return F::avg_pool2d(x, step.pool);
    case GraphOp::Pad:
      return F::pad2d(x, step.pad);
    case GraphOp::Flatten:
      return F::flatten(x);
    case GraphOp::Reshape: {
      Shape s{x.shape()[0]};
      s.insert(s.end(), step.shape.begin(), step.shape.end());
      return F::reshape(x, s);
    }
    case GraphOp::Add:
      return F::add(x, values[static_cast<std::size_t>(step.inputs[1])]);
    case GraphOp::ChannelAffine:
      return F::channel_affine(x, m_affine_weight[index].value(), m_affine_bias[index].value());
    case GraphOp::FixedConv:
      return step.groups > 1 ? F::grouped_conv2d(x, m_affine_weight[index], m_affine_bias[index], step.conv, step.groups)
                             : F::conv2d(x, m_affine_weight[index], m_affine_bias[index], step.conv);
    case GraphOp::Concat: {
      std::vector<Var> xs;
      for (int v : step.inputs) xs.push_back(values[static_cast<std::size_t>(v)]);
      return concat_channels(xs);
    }
  }
  AEGIS_THROW(InvalidArgument, "GraphModule: step '" << step.node << "' has an unknown operation");
}

Var GraphModule::forward(const Var& x) {
  AEGIS_CHECK(m_output >= 0, "GraphModule: forward before set_output");
  Shape example(x.shape());
  AEGIS_CHECK_AS(ShapeError, !example.empty(),
                 "GraphModule: input " << x.value().describe() << " has no batch dimension");
  example.erase(example.begin());
  AEGIS_CHECK_AS(
      ShapeError, example == m_input_shape,
      m_source << ": takes inputs [N, " << shape_str(m_input_shape).substr(1) << " but got " << x.value().describe());
  if (x.device() != m_constants_device) place_constants(x.device());
  std::vector<Var> values(static_cast<std::size_t>(m_num_values));
  values[0] = x;
  for (std::size_t i = 0; i < m_steps.size(); ++i) {
    const GraphStep& step = m_steps[i];
    try {
      values[static_cast<std::size_t>(step.output)] = run_step(step, i, values);
    } catch (const ShapeError& e) {
      AEGIS_THROW(ShapeError, m_source << ": node '" << step.node << "': " << e.message());
    }
    for (int v : m_release_after[i]) values[static_cast<std::size_t>(v)] = Var();
  }
  return values[static_cast<std::size_t>(m_output)];
}

std::string GraphModule::describe() const {
  std::ostringstream os;
  os << "GraphModule(" << m_source << ": " << m_steps.size() << " steps, input " << shape_str(m_input_shape) << ", "
     << num_classes() << " classes";
  if (!m_skipped_final.empty()) os << ", final " << m_skipped_final << " skipped";
  os << ")";
  return os.str();
}

}  // namespace aegis::nn
