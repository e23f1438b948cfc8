// The entry points of the ONNX import (nn/onnx_import.h) and the converter's walk over the
// graph: model-level checks, the graph's input and output, and the dispatch per operator.
#include "nn/onnx_import.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "core/config.h"

#if AEGIS_HAS_ONNX
#include "nn/onnx/onnx_converter.h"
#endif

namespace aegis::nn {

namespace {
constexpr const char* kSupportedOperators =
    "Add, AveragePool, BatchNormalization, Cast (to float, or of constants), Clip, Concat, Constant, "
    "ConstantOfShape (constants), Conv, Div, Dropout, Flatten, Gather, Gemm, GlobalAveragePool, Identity, "
    "LeakyRelu, LogSoftmax (final node), MatMul, MaxPool, Mul, Pad (constant 0, H and W), ReduceMean (spatial), "
    "Relu, Reshape, Shape, Sigmoid, Slice, Softmax (final node), Softplus, Squeeze, Sub, Tanh, Transpose (of "
    "constants), Unsqueeze";
}  // namespace

bool onnx_supported() {
  return AEGIS_HAS_ONNX != 0;
}

bool is_onnx_path(const std::string& path) {
  if (path.size() < 5) return false;
  std::string ext = path.substr(path.size() - 5);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".onnx";
}

std::string supported_onnx_operators() {
  return kSupportedOperators;
}

#if !AEGIS_HAS_ONNX

OnnxModel load_onnx_bytes(const std::string&, const std::string& name, const std::string&) {
  AEGIS_THROW(Unsupported, name << ": this aegis was built without ONNX support (install libonnx-dev and "
                                   "libprotobuf-dev, then configure and build again)");
}

OnnxModel load_onnx(const std::string& path) {
  return load_onnx_bytes("", path, "");
}

#else

namespace onnx_import {

namespace {
constexpr std::int64_t kMaxIrVersion = 10;
constexpr std::int64_t kMinOpset = 11, kMaxOpset = 21;
}  // namespace

Converter::Converter(const onnx::GraphProto& graph, Context ctx) : m_graph(graph), m_ctx(std::move(ctx)) {}

void Converter::unsupported(const std::string& what) const {
  throw Unsupported(m_label + ": " + what);
}

std::shared_ptr<GraphModule> Converter::run() {
  read_initializers();
  for (const auto& node : m_graph.node()) {
    for (const auto& in : node.input())
      if (!in.empty()) m_consumers[in].push_back(&node);
    if (node.op_type() == "Constant")
      for (const auto& out : node.output()) m_static.insert(out);
  }
  read_input();
  int index = 0;
  for (const auto& node : m_graph.node()) convert_node(node, index++);
  finish();
  return m_module;
}

void Converter::read_initializers() {
  for (const auto& t : m_graph.initializer()) {
    Value v;
    v.is_const = true;
    v.constant = read_tensor(t, t.name(), m_ctx);
    m_static.insert(t.name());
    m_values[t.name()] = std::move(v);
  }
}

void Converter::read_input() {
  m_label = m_ctx.name;
  std::vector<const onnx::ValueInfoProto*> inputs;
  for (const auto& in : m_graph.input())
    if (!m_values.count(in.name())) inputs.push_back(&in);  // IR < 4 lists initializers as inputs too
  if (inputs.size() != 1)
    unsupported("the graph has " + std::to_string(inputs.size()) +
                " inputs besides its initializers; a classifier has one");
  const onnx::ValueInfoProto& in = *inputs[0];
  m_input_name = in.name();
  const auto& type = in.type();
  if (!type.has_tensor_type() || type.tensor_type().elem_type() != onnx::TensorProto_DataType_FLOAT)
    unsupported("input '" + in.name() + "' is not a float tensor; export the model with a float32 input");
  const auto& shape = type.tensor_type().shape();
  const int rank = shape.dim_size();
  if (rank != 4 && rank != 2)
    unsupported("input '" + in.name() + "' has rank " + std::to_string(rank) +
                "; expected an image batch [N, C, H, W] (or [N, D] for a fully connected network)");
  Shape example;
  for (int d = 1; d < rank; ++d) {
    const auto& dim = shape.dim(d);
    if (!dim.has_dim_value() || dim.dim_value() < 1)
      unsupported("input '" + in.name() + "' dimension " + std::to_string(d) + " is " +
                  (dim.dim_param().empty() ? std::string("unknown") : "'" + dim.dim_param() + "'") +
                  ", not a fixed size; only the batch dimension may be symbolic (export with a fixed image size)");
    example.push_back(dim.dim_value());
  }
  // One example of up to 2^28 values (a 3×8192×8192 image fits): larger claims are malformed, and
  // every size computed from the input stays far from overflow.
  std::int64_t numel = 1;
  for (std::int64_t d : example)
    if (d > (std::int64_t{1} << 28) || (numel *= d) > (std::int64_t{1} << 28))
      unsupported("input '" + in.name() + "' of shape [N, " + shape_str(example).substr(1) +
                  " is larger than 2^28 values per example");
  if (shape.dim(0).has_dim_value()) m_fixed_batch = shape.dim(0).dim_value();
  m_module = std::make_shared<GraphModule>(example, m_ctx.name);
  Value v;
  v.slot = 0;
  v.shape = example;
  m_values[m_input_name] = std::move(v);
  if (m_graph.output_size() != 1)
    unsupported("the graph has " + std::to_string(m_graph.output_size()) +
                " outputs; a classifier has one (its logits or probabilities)");
  m_output_name = m_graph.output(0).name();
}

bool Converter::has_input(const onnx::NodeProto& node, int i) const {
  return i < node.input_size() && !node.input(i).empty();
}

const Value& Converter::computed(const onnx::NodeProto& node, int i, bool padded_ok) {
  if (!has_input(node, i)) unsupported("input " + std::to_string(i) + " is missing");
  const Value& v = m_values.at(node.input(i));
  if (v.is_const) unsupported("input '" + node.input(i) + "' is a constant; aegis needs a computed value here");
  // convert_pad folds a Pad only into its sole reader, a Conv or pooling node, which reads it here.
  AEGIS_CHECK(padded_ok || v.zero_pads == Pads{}, m_label << ": reads the folded Pad output '" << node.input(i) << "'");
  return v;
}

const Constant& Converter::constant(const onnx::NodeProto& node, int i) {
  if (!has_input(node, i)) unsupported("input " + std::to_string(i) + " is missing");
  const Value& v = m_values.at(node.input(i));
  if (!v.is_const)
    unsupported("input '" + node.input(i) + "' is computed from the model's input; aegis needs a constant here");
  return v.constant;
}

void Converter::define(const std::string& name, Value v) {
  m_values[name] = std::move(v);
}

Value Converter::emit(GraphStep step, Shape shape) {
  step.node = m_label.substr(m_ctx.name.size() + 2);
  Value v;
  v.slot = m_module->add_step(std::move(step));
  v.shape = std::move(shape);
  return v;
}

void Converter::note_layer(const onnx::NodeProto& node, const Value& v, const std::string& name, bool weight_in_out) {
  OnnxLayerOrigin o;
  o.layer = name;
  o.node = m_index;
  o.op_type = node.op_type();
  o.weight = node.input(1);
  if (node.op_type() != "MatMul" && has_input(node, 2)) o.bias = node.input(2);
  o.weight_in_out = weight_in_out;
  m_origin_of_slot[v.slot] = m_origin.layers.size();
  m_origin.layers.push_back(std::move(o));
}

Value Converter::emit_unary(GraphOp op, const Value& x) {
  GraphStep s;
  s.op = op;
  s.inputs = {x.slot};
  return emit(std::move(s), x.shape);
}

Value Converter::emit_affine(const Value& x, std::vector<float> scale, std::vector<float> shift) {
  if (x.shape.size() != 1 && x.shape.size() != 3)
    unsupported("a per-channel affine map needs inputs [N, C, H, W] or [N, D], got [N, " +
                shape_str(x.shape).substr(1));
  GraphStep s;
  s.op = GraphOp::ChannelAffine;
  s.inputs = {x.slot};
  s.shape = x.shape;
  s.scale = std::move(scale);
  s.shift = std::move(shift);
  return emit(std::move(s), x.shape);
}

const onnx::NodeProto* Converter::sole_consumer(const std::string& name) const {
  if (name == m_output_name) return nullptr;
  auto it = m_consumers.find(name);
  return it != m_consumers.end() && it->second.size() == 1 ? it->second[0] : nullptr;
}

std::string Converter::layer_name(const onnx::NodeProto& node, const std::string& weight_name) {
  const std::string suffix = ".weight";
  std::string name;
  if (weight_name.size() > suffix.size() &&
      weight_name.compare(weight_name.size() - suffix.size(), suffix.size(), suffix) == 0)
    name = weight_name.substr(0, weight_name.size() - suffix.size());
  else if (!node.name().empty())
    name = node.name();
  else
    name = "layer" + std::to_string(m_index);
  std::string unique = name;
  for (int k = 1; m_layer_names.count(unique); ++k) unique = name + "_" + std::to_string(k);
  m_layer_names.insert(unique);
  return unique;
}

void Converter::convert_node(const onnx::NodeProto& node, int index) {
  m_index = index;
  m_label = m_ctx.name + ": " + node_label(node, index);
  const std::string& op = node.op_type();
  if (!node.domain().empty() && node.domain() != "ai.onnx")
    unsupported("operator domain '" + node.domain() +
                "' is not supported; supported operators (default domain): " + kSupportedOperators);
  std::vector<const Constant*> consts;
  bool all_const = true;
  for (int i = 0; i < node.input_size(); ++i) {
    if (node.input(i).empty()) {
      consts.push_back(nullptr);
      continue;
    }
    auto it = m_values.find(node.input(i));
    if (it == m_values.end())
      throw IoError(m_label + ": reads '" + node.input(i) +
                    "', which is neither the input, an initializer nor an earlier node's output (the file is "
                    "truncated or its nodes are not in topological order)");
    all_const = all_const && it->second.is_const;
    consts.push_back(it->second.is_const ? &it->second.constant : nullptr);
  }
  if (node.output_size() < 1 || node.output(0).empty()) unsupported("the node has no output");
  const std::string& out = node.output(0);

  if (op == "Constant") {
    const auto* a = node.attribute_size() == 1 ? &node.attribute(0) : nullptr;
    Value v;
    v.is_const = true;
    if (a && a->name() == "value")
      v.constant = read_tensor(a->t(), out, m_ctx);
    else if (a && a->name() == "value_float")
      v.constant = Constant{{}, {a->f()}, false};
    else if (a && a->name() == "value_int")
      v.constant = Constant{{}, {static_cast<double>(a->i())}, true};
    else if (a && a->name() == "value_floats")
      v.constant = Constant{{a->floats_size()}, std::vector<double>(a->floats().begin(), a->floats().end()), false};
    else if (a && a->name() == "value_ints")
      v.constant = Constant{{a->ints_size()}, std::vector<double>(a->ints().begin(), a->ints().end()), true};
    else
      unsupported("a Constant needs exactly one attribute value, value_float(s) or value_int(s)");
    return define(out, std::move(v));
  }
  if (all_const && op != "Softmax" && op != "LogSoftmax") {
    std::vector<Constant> results;
    if (fold_constant_node(node, index, consts, results, m_ctx)) {
      Value v;
      v.is_const = true;
      v.constant = std::move(results[0]);
      m_static.insert(out);
      return define(out, std::move(v));
    }
  }
  if (op == "Shape") {
    const Value& x = computed(node, 0);
    std::vector<double> dims{kBatch};
    dims.insert(dims.end(), x.shape.begin(), x.shape.end());
    const auto rank = static_cast<std::int64_t>(dims.size());
    auto clamp = [rank](std::int64_t i) { return std::max<std::int64_t>(0, std::min(i < 0 ? i + rank : i, rank)); };
    const std::int64_t begin = clamp(attr_int(node, "start", 0)), end = clamp(attr_int(node, "end", rank));
    Value v;
    v.is_const = true;
    v.constant.integer = true;
    for (std::int64_t i = begin; i < end; ++i) v.constant.values.push_back(dims[static_cast<std::size_t>(i)]);
    v.constant.shape = {v.constant.numel()};
    return define(out, std::move(v));
  }
  if (op == "Cast" && attr_int(node, "to", 0) == onnx::TensorProto_DataType_FLOAT)
    return define(out, computed(node, 0));  // every computed value is float already
  if (op == "Identity" || op == "Dropout") {
    if (op == "Dropout" && node.output_size() > 1 && !node.output(1).empty() && m_consumers.count(node.output(1)))
      unsupported("the Dropout mask output is used; only inference-mode Dropout (the identity) is supported");
    return define(out, computed(node, 0));
  }
  if (op == "Softmax" || op == "LogSoftmax") {
    if (out != m_output_name)
      unsupported(op + " is supported only as the graph's final node (skipped, so that aegis sees logits)");
    m_module->set_skipped_final(op);
    return define(out, computed(node, 0));
  }
  if (op == "Relu" || op == "Sigmoid" || op == "Softplus") {
    Value v = emit_unary(op == "Relu"      ? GraphOp::Relu
                         : op == "Sigmoid" ? GraphOp::Sigmoid
                                           : GraphOp::Softplus,
                         computed(node, 0));
    v.non_negative = true;  // what lets a zero Pad fold into a following MaxPool
    return define(out, std::move(v));
  }
  if (op == "Tanh") return define(out, emit_unary(GraphOp::Tanh, computed(node, 0)));
  if (op == "Pad") return convert_pad(node);
  if (op == "Conv") return convert_conv(node);
  if (op == "Gemm" || op == "MatMul") return convert_gemm(node, op == "MatMul");
  if (op == "BatchNormalization") return convert_batch_norm(node);
  if (op == "MaxPool" || op == "AveragePool" || op == "GlobalAveragePool" || op == "ReduceMean")
    return convert_pool(node);
  if (op == "Flatten" || op == "Reshape") return convert_reshape(node);
  if (op == "Concat") return convert_concat(node);
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") return convert_arithmetic(node);
  if (op == "LeakyRelu") return convert_leaky_relu(node);
  if (op == "Clip") return convert_clip(node);
  unsupported("operator '" + op + "' is not supported; supported: " + kSupportedOperators);
}

void Converter::finish() {
  m_label = m_ctx.name;
  auto it = m_values.find(m_output_name);
  if (it == m_values.end()) throw IoError(m_ctx.name + ": no node produces the graph output '" + m_output_name + "'");
  const Value& v = it->second;
  if (v.is_const) unsupported("the graph output '" + m_output_name + "' does not depend on the input");
  if (v.shape.size() != 1)
    unsupported("the graph output has per-example shape " + shape_str(v.shape) +
                "; a classifier outputs [N, K] (flatten before the last layer)");
  if (v.slot == 0) unsupported("the graph output is its input: there is no model");
  m_module->set_output(v.slot, v.shape);
  m_origin.num_nodes = m_graph.node_size();
  m_module->set_onnx_origin(std::move(m_origin));
}

}  // namespace onnx_import

OnnxModel load_onnx_bytes(const std::string& bytes, const std::string& name, const std::string& base_dir) {
  onnx::ModelProto model;
  if (bytes.empty() || !model.ParseFromString(bytes))
    AEGIS_THROW(IoError, name << ": not an ONNX model (the protobuf does not parse: a truncated or foreign file)");
  if (model.ir_version() < 1 || !model.has_graph() || model.graph().node_size() == 0)
    AEGIS_THROW(IoError, name << ": not an ONNX model (no IR version or no graph)");
  if (model.ir_version() > onnx_import::kMaxIrVersion)
    AEGIS_THROW(Unsupported, name << ": ONNX IR version " << model.ir_version() << " is newer than the supported "
                                  << onnx_import::kMaxIrVersion << "; export with an older exporter or opset");
  std::int64_t opset = -1;
  for (const auto& o : model.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  if (opset < onnx_import::kMinOpset || opset > onnx_import::kMaxOpset)
    AEGIS_THROW(Unsupported, name << ": default-domain opset " << opset << " is outside the supported "
                                  << onnx_import::kMinOpset << "–" << onnx_import::kMaxOpset
                                  << " (torch.onnx.export(..., opset_version=17) writes a supported one)");
  OnnxModel out;
  out.model = onnx_import::Converter(model.graph(), onnx_import::Context{name, base_dir}).run();
  for (const auto& p : model.metadata_props()) out.metadata[p.key()] = p.value();
  out.metadata["onnx.producer"] =
      model.producer_name() + (model.producer_version().empty() ? "" : " " + model.producer_version());
  out.metadata["onnx.opset"] = std::to_string(opset);
  out.metadata["onnx.ir_version"] = std::to_string(model.ir_version());
  return out;
}

OnnxModel load_onnx(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) AEGIS_THROW(IoError, path << ": cannot open for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (!in.good() && !in.eof()) AEGIS_THROW(IoError, path << ": read failed");
  const auto slash = path.find_last_of('/');
  OnnxModel out = load_onnx_bytes(buffer.str(), path, slash == std::string::npos ? "." : path.substr(0, slash));
  OnnxOrigin origin = out.model->onnx_origin();
  origin.path = path;
  out.model->set_onnx_origin(std::move(origin));
  return out;
}

#endif  // AEGIS_HAS_ONNX

}  // namespace aegis::nn
