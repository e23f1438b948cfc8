// The ONNX operators with parameters or geometry: Conv, Gemm/MatMul (child Conv2d/Linear
// modules holding the weights), BatchNormalization (folded into the layer before it, Ioffe &
// Szegedy 2015 eq. in Alg. 2: y = γ(x − μ)/√(σ² + ε) + β), Flatten/Reshape and Concat.
// (Pooling and Pad: onnx_windows.cpp.)
#include "core/config.h"
#if AEGIS_HAS_ONNX

#include <algorithm>
#include <cmath>
#include <limits>

#include "nn/layers.h"
#include "nn/onnx/onnx_converter.h"

namespace aegis::nn::onnx_import {

namespace {

void copy_into(const Var& param, const std::vector<float>& values, const Shape& shape) {
  Var p = param;
  p.mutable_value().copy_from(Tensor::from_vector(values, shape));
}

}  // namespace

void Converter::convert_conv(const onnx::NodeProto& node) {
  const Constant& w = constant(node, 1);
  const Value& x_in = computed(node, 0, true);
  if (x_in.shape.size() != 3) unsupported("Conv needs inputs [N, C, H, W], got [N, " + shape_str(x_in.shape).substr(1));
  if (w.shape.size() != 4)
    unsupported("Conv weight has shape " + shape_str(w.shape) + "; only 2-d convolutions are supported");
  const std::int64_t group = attr_int(node, "group", 1);
  if (group < 1 || x_in.shape[0] % group != 0 || w.shape[0] % group != 0)
    unsupported("group " + std::to_string(group) + " does not divide the " + std::to_string(x_in.shape[0]) +
                " input and " + std::to_string(w.shape[0]) + " output channels");
  if (w.shape[2] != w.shape[3]) unsupported("kernel " + shape_str(w.shape) + " is not square");
  Window win = read_window(node, w.shape[2]);
  // Asymmetric pads (and those of a Pad node before) become a zero Pad step: the convolution's
  // own zero padding is the same values, so either way the sums are the same.
  const Value x = padded_input(node, win, 0.0f, std::numeric_limits<std::int64_t>::max());
  const std::int64_t padding = win.pads[0];
  if (win.kernel != w.shape[2]) unsupported("kernel_shape disagrees with the weight's shape " + shape_str(w.shape));
  const std::int64_t out_c = w.shape[0], in_c = x.shape[0];
  if (w.shape[1] != in_c / group)
    throw IoError(m_label + ": weight " + shape_str(w.shape) + " does not fit an input of " + std::to_string(in_c) +
                  " channels");
  const std::int64_t extent = win.dilation * (win.kernel - 1) + 1;  // the input span of a dilated kernel
  const std::int64_t oh = (x.shape[1] + 2 * padding - extent) / win.stride + 1;
  const std::int64_t ow = (x.shape[2] + 2 * padding - extent) / win.stride + 1;
  if (x.shape[1] + 2 * padding < extent || x.shape[2] + 2 * padding < extent)
    unsupported("kernel " + std::to_string(win.kernel) + " (dilation " + std::to_string(win.dilation) +
                ") is larger than the padded input [N, " + shape_str(x.shape).substr(1));
  const bool has_bias = has_input(node, 2);
  if (has_bias && constant(node, 2).numel() != out_c)
    throw IoError(m_label + ": bias has " + std::to_string(constant(node, 2).numel()) + " values for " +
                  std::to_string(out_c) + " channels");
  if (group > 1 && win.dilation == 1) {
    // The grouped kernel (F::grouped_conv2d) with the node's own weight [O, C/group, k, k].
    ++m_origin.grouped_convs;
    GraphStep s;
    s.op = GraphOp::FixedConv;
    s.inputs = {x.slot};
    s.conv = Conv2dOptions{win.stride, padding, win.dilation};
    s.groups = group;
    s.weight_shape = w.shape;
    s.weight = as_floats(w);
    if (has_bias) s.shift = as_floats(constant(node, 2));
    return define(node.output(0), emit(std::move(s), {out_c, oh, ow}));
  }
  if (group > 1) {
    ++m_origin.grouped_convs;
    // Dilated: a block-diagonal dense weight (nn/graph_module.h): output channel o reads only the
    // input channels of its group, g = o / (O/group), through the weight's [o, c − g·C/group] entries.
    constexpr std::int64_t kMaxDenseWeights = std::int64_t{1} << 24;
    if (static_cast<double>(out_c) * static_cast<double>(in_c) * static_cast<double>(win.kernel * win.kernel) >
        static_cast<double>(kMaxDenseWeights))
      unsupported("a grouped convolution of " + std::to_string(out_c) + "×" + std::to_string(in_c) +
                  " channels is too wide "
                  "to run as a dense convolution (a grouped kernel is not there yet)");
    const std::int64_t per_group_in = in_c / group, per_group_out = out_c / group, kk = win.kernel * win.kernel;
    GraphStep s;
    s.op = GraphOp::FixedConv;
    s.inputs = {x.slot};
    s.conv = Conv2dOptions{win.stride, padding, win.dilation};
    s.weight_shape = {out_c, in_c, win.kernel, win.kernel};
    s.weight.assign(static_cast<std::size_t>(out_c * in_c * kk), 0.0f);
    for (std::int64_t o = 0; o < out_c; ++o) {
      const std::int64_t first_in = (o / per_group_out) * per_group_in;
      for (std::int64_t c = 0; c < per_group_in; ++c)
        for (std::int64_t k = 0; k < kk; ++k)
          s.weight[static_cast<std::size_t>((o * in_c + first_in + c) * kk + k)] =
              static_cast<float>(w.values[static_cast<std::size_t>((o * per_group_in + c) * kk + k)]);
    }
    if (has_bias) s.shift = as_floats(constant(node, 2));
    return define(node.output(0), emit(std::move(s), {out_c, oh, ow}));
  }
  // A BatchNorm or a constant Add after the convolution folds into its bias, which then must exist.
  const onnx::NodeProto* next = sole_consumer(node.output(0));
  const bool needs_bias = next && (next->op_type() == "BatchNormalization" ||
                                   ((next->op_type() == "Add" || next->op_type() == "Sub") && next->input_size() == 2 &&
                                    (is_static(next->input(0)) || is_static(next->input(1)))));
  InitRng rng(0);
  auto conv = std::make_shared<Conv2d>(in_c, out_c, win.kernel, rng, Conv2dOptions{win.stride, padding, win.dilation},
                                       has_bias || needs_bias);
  copy_into(conv->weight(), as_floats(w), w.shape);
  if (has_bias) {
    copy_into(conv->bias(), as_floats(constant(node, 2)), {out_c});
  } else if (needs_bias) {
    copy_into(conv->bias(), std::vector<float>(static_cast<std::size_t>(out_c), 0.0f), {out_c});
  }
  const std::string name = layer_name(node, node.input(1));
  m_module->add_layer(name, conv);
  GraphStep s;
  s.op = GraphOp::Layer;
  s.inputs = {x.slot};
  s.layer = conv;
  Value v = emit(std::move(s), {out_c, oh, ow});
  m_layer_of_slot[v.slot] = conv;
  note_layer(node, v, name, false);
  define(node.output(0), std::move(v));
}

void Converter::convert_gemm(const onnx::NodeProto& node, bool matmul) {
  const Value& x = computed(node, 0);
  const Constant& b = constant(node, 1);
  if (x.shape.size() != 1)
    unsupported("needs inputs [N, K], got [N, " + shape_str(x.shape).substr(1) + " (flatten first)");
  if (b.shape.size() != 2) unsupported("the weight has shape " + shape_str(b.shape) + "; expected a matrix");
  const float alpha = matmul ? 1.0f : attr_float(node, "alpha", 1.0f);
  const float beta = matmul ? 1.0f : attr_float(node, "beta", 1.0f);
  if (!matmul && attr_int(node, "transA", 0) != 0) unsupported("transA = 1 is not supported");
  const bool trans_b = !matmul && attr_int(node, "transB", 0) != 0;
  // Linear keeps W as [out, in]: transB = 1 is that layout, otherwise B is [in, out].
  const std::int64_t in_f = trans_b ? b.shape[1] : b.shape[0], out_f = trans_b ? b.shape[0] : b.shape[1];
  if (in_f != x.shape[0])
    throw IoError(m_label + ": weight " + shape_str(b.shape) + " does not fit inputs of " + std::to_string(x.shape[0]) +
                  " features");
  std::vector<float> weight(static_cast<std::size_t>(in_f * out_f));
  for (std::int64_t o = 0; o < out_f; ++o)
    for (std::int64_t i = 0; i < in_f; ++i)
      weight[static_cast<std::size_t>(o * in_f + i)] =
          static_cast<float>(alpha * b.values[static_cast<std::size_t>(trans_b ? o * in_f + i : i * out_f + o)]);
  const bool has_bias = !matmul && has_input(node, 2);
  const onnx::NodeProto* next = sole_consumer(node.output(0));
  const bool needs_bias = next && (next->op_type() == "BatchNormalization" ||
                                   ((next->op_type() == "Add" || next->op_type() == "Sub") && next->input_size() == 2 &&
                                    (is_static(next->input(0)) || is_static(next->input(1)))));
  InitRng rng(0);
  auto linear = std::make_shared<Linear>(in_f, out_f, rng, has_bias || needs_bias);
  copy_into(linear->weight(), weight, {out_f, in_f});
  if (has_bias) {
    const Constant& c = constant(node, 2);
    if (c.numel() != 1 && c.numel() != out_f)
      unsupported("bias C of shape " + shape_str(c.shape) + " does not broadcast per output feature");
    std::vector<float> bias(static_cast<std::size_t>(out_f));
    for (std::int64_t o = 0; o < out_f; ++o)
      bias[static_cast<std::size_t>(o)] =
          static_cast<float>(beta * c.values[static_cast<std::size_t>(c.numel() == 1 ? 0 : o)]);
    copy_into(linear->bias(), bias, {out_f});
  } else if (needs_bias) {
    copy_into(linear->bias(), std::vector<float>(static_cast<std::size_t>(out_f), 0.0f), {out_f});
  }
  const std::string name = layer_name(node, node.input(1));
  m_module->add_layer(name, linear);
  GraphStep s;
  s.op = GraphOp::Layer;
  s.inputs = {x.slot};
  s.layer = linear;
  Value v = emit(std::move(s), {out_f});
  m_layer_of_slot[v.slot] = linear;
  note_layer(node, v, name, !trans_b);
  define(node.output(0), std::move(v));
}

bool Converter::fold_into_layer(const Value& x, const std::string& name, const std::vector<double>& scale,
                                const std::vector<double>& shift) {
  auto it = m_layer_of_slot.find(x.slot);
  if (it == m_layer_of_slot.end() || sole_consumer(name) == nullptr) return false;
  // The layer's output may go by several names (Identity and Dropout alias it): folding changes
  // what every reader of the value sees, so `name`'s node must be its only reader under any name.
  std::size_t readers = 0;
  for (const auto& [other, value] : m_values)
    if (!value.is_const && value.slot == x.slot) {
      auto c = m_consumers.find(other);
      readers += (c == m_consumers.end() ? 0 : c->second.size()) + (other == m_output_name ? 1 : 0);
    }
  if (readers != 1) return false;
  Module& layer = *it->second;
  Var w, b;
  if (auto* conv = dynamic_cast<Conv2d*>(&layer)) {
    w = conv->weight();
    b = conv->bias();
  } else if (auto* lin = dynamic_cast<Linear*>(&layer)) {
    w = lin->weight();
    b = lin->bias();
  }
  if (!w.defined() || !b.defined()) return false;
  const std::int64_t channels = w.shape()[0];
  const std::int64_t per_channel = w.value().numel() / channels;
  std::vector<float> wv = w.value().to_vector<float>(), bv = b.value().to_vector<float>();
  for (std::int64_t c = 0; c < channels; ++c) {
    const auto ci = static_cast<std::size_t>(c);
    for (std::int64_t k = 0; k < per_channel; ++k) {
      float& e = wv[static_cast<std::size_t>(c * per_channel + k)];
      e = static_cast<float>(e * scale[ci]);
    }
    bv[ci] = static_cast<float>(bv[ci] * scale[ci] + shift[ci]);
  }
  copy_into(w, wv, w.shape());
  copy_into(b, bv, b.shape());
  m_layer_of_slot.erase(it);
  const onnx::NodeProto& folded = m_graph.node(m_index);
  int input = 0;
  while (input + 1 < folded.input_size() && folded.input(input) != name) ++input;
  m_origin.layers[m_origin_of_slot.at(x.slot)].absorbed.emplace_back(m_index, input);
  return true;
}

void Converter::convert_batch_norm(const onnx::NodeProto& node) {
  const Value& x = computed(node, 0);
  // aegis runs every BatchNorm in inference form, frozen: its statistics and affine parameters are
  // constants (folded into the layer before it, or a fixed affine step), which keeps each
  // example's gradient its own (DP-SGD). A BatchNorm in training mode mixes the examples of a
  // batch and is refused.
  if (attr_int(node, "training_mode", 0) != 0)
    unsupported(
        "training_mode = 1 is not supported: aegis runs BatchNorm frozen, in inference form; export the model in "
        "eval() mode (or use GroupNorm for a normalization that trains)");
  ++m_origin.batch_norms;
  for (int i = 1; i < node.output_size(); ++i)
    if (!node.output(i).empty() && m_consumers.count(node.output(i)))
      unsupported("the running-statistics outputs are used; only the inference form is supported");
  const double eps = attr_float(node, "epsilon", 1e-5f);
  const std::int64_t channels = x.shape.empty() ? 0 : x.shape[0];
  const Constant *gamma = &constant(node, 1), *beta = &constant(node, 2), *mean = &constant(node, 3),
                 *var = &constant(node, 4);
  for (const Constant* c : {gamma, beta, mean, var})
    if (c->numel() != channels)
      throw IoError(m_label + ": a parameter has " + std::to_string(c->numel()) + " values for " +
                    std::to_string(channels) + " channels");
  std::vector<double> scale(static_cast<std::size_t>(channels)), shift(scale.size());
  for (std::size_t c = 0; c < scale.size(); ++c) {
    scale[c] = gamma->values[c] / std::sqrt(var->values[c] + eps);
    shift[c] = beta->values[c] - mean->values[c] * scale[c];
  }
  if (fold_into_layer(x, node.input(0), scale, shift)) return define(node.output(0), x);
  define(node.output(0), emit_affine(x, std::vector<float>(scale.begin(), scale.end()),
                                     std::vector<float>(shift.begin(), shift.end())));
}

void Converter::convert_reshape(const onnx::NodeProto& node) {
  const Value& x = computed(node, 0);
  const std::int64_t numel = shape_numel(x.shape);
  if (node.op_type() == "Flatten") {
    std::int64_t axis = attr_int(node, "axis", 1);
    if (axis < 0) axis += static_cast<std::int64_t>(x.shape.size()) + 1;
    if (axis != 1) unsupported("axis " + std::to_string(axis) + " is not supported (only 1: keep the batch)");
    if (x.shape.size() == 1) return define(node.output(0), x);
    GraphStep s;
    s.op = GraphOp::Flatten;
    s.inputs = {x.slot};
    return define(node.output(0), emit(std::move(s), {numel}));
  }
  const Constant& target = constant(node, 1);
  if (target.shape.size() != 1 || target.numel() < 1) unsupported("the target shape is not a non-empty 1-d constant");
  // allowzero = 1 (torch's dynamo exporter writes it) makes a 0 in the target a size rather than
  // a copy of the input's dimension; without a 0 in the target both readings are the same.
  if (attr_int(node, "allowzero", 0) != 0 && std::count(target.values.begin(), target.values.end(), 0.0) > 0)
    unsupported("allowzero = 1 with a 0 in the target shape is not supported");
  const double first = target.values[0];
  // The first entry must keep the batch: the symbolic batch size, 0 (copy), the graph's fixed
  // batch size, or −1 when the rest accounts for one example exactly.
  Shape rest;
  std::int64_t infer = -1, known = 1;
  for (std::size_t i = 1; i < target.values.size(); ++i) {
    const double d = target.values[i];
    if (d == kBatch) unsupported("the batch size is moved away from dimension 0; not supported");
    auto di = to_int(d, m_label);
    if (di == 0) {
      if (i > x.shape.size()) throw IoError(m_label + ": a 0 in the target shape has no input dimension to copy");
      di = x.shape[i - 1];
    }
    if (di == -1) {
      if (infer >= 0) throw IoError(m_label + ": the target shape has two −1 entries");
      infer = static_cast<std::int64_t>(rest.size());
    } else if (di < 1) {
      throw IoError(m_label + ": invalid target dimension " + std::to_string(di));
    } else if (__builtin_mul_overflow(known, di, &known)) {
      throw IoError(m_label + ": the target shape's size overflows");
    }
    rest.push_back(di);
  }
  if (infer >= 0) {
    if (numel % known != 0)
      unsupported("the target shape cannot hold one example of " + std::to_string(numel) + " values");
    rest[static_cast<std::size_t>(infer)] = numel / known;
    known = numel;
  }
  const bool keeps_batch = first == kBatch || first == 0 ||
                           (m_fixed_batch > 0 && first == static_cast<double>(m_fixed_batch)) ||
                           (first == -1 && infer < 0);
  if (!keeps_batch || known != numel)
    unsupported(
        "the target shape cannot be resolved to [N, ...] with N the batch size; export the model with "
        "x.flatten(1) or x.view(x.size(0), -1)");
  GraphStep s;
  s.op = GraphOp::Reshape;
  s.inputs = {x.slot};
  s.shape = rest;
  define(node.output(0), emit(std::move(s), rest));
}

void Converter::convert_concat(const onnx::NodeProto& node) {
  const Value& first = computed(node, 0);
  std::int64_t axis = attr_int(node, "axis", 1);
  if (axis < 0) axis += static_cast<std::int64_t>(first.shape.size()) + 1;
  if (axis != 1)
    unsupported("concatenation along axis " + std::to_string(axis) + " is not supported (only 1, the channels)");
  GraphStep s;
  s.op = GraphOp::Concat;
  Shape shape = first.shape;
  shape[0] = 0;
  for (int i = 0; i < node.input_size(); ++i) {
    const Value& v = computed(node, i);
    Shape a = v.shape, b = first.shape;
    if (a.size() != b.size() || !std::equal(a.begin() + 1, a.end(), b.begin() + 1))
      unsupported("inputs [N, " + shape_str(a).substr(1) + " and [N, " + shape_str(b).substr(1) +
                  " differ beyond the channels");
    shape[0] += v.shape[0];
    s.inputs.push_back(v.slot);
  }
  define(node.output(0), emit(std::move(s), shape));
}

}  // namespace aegis::nn::onnx_import

#endif  // AEGIS_HAS_ONNX
