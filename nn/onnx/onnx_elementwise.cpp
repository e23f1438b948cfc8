// The ONNX elementwise operators: Add/Sub/Mul/Div (a residual Add of two computed values, or a
// constant broadcast per channel: the normalization layers, a bias after MatMul), LeakyRelu
// and Clip. The last two are composed from ReLU and per-channel affine steps:
//   LeakyRelu(x) = relu(x) − α·relu(−x)
//   Clip(x, lo, hi) = lo + relu(x − lo) − relu(x − hi)   (lo < hi)
// with the derivative of the composition equal to the operator's own. LeakyRelu is exact in
// floating point (one nonzero term per branch); Clip is exact inside [lo, hi] when lo = 0 (ReLU6)
// and within a rounding of x − lo or x − hi (an ulp of x) otherwise.
#include "core/config.h"
#if AEGIS_HAS_ONNX

#include <limits>

#include "nn/onnx/onnx_converter.h"

namespace aegis::nn::onnx_import {

std::vector<float> Converter::per_channel(const Constant& c, const Value& x, const std::string& what) {
  const std::size_t rank = x.shape.size() + 1;  // with the batch dimension
  const std::int64_t channels = x.shape.empty() ? 1 : x.shape[0];
  if (c.numel() == 1) return std::vector<float>(static_cast<std::size_t>(channels), static_cast<float>(c.values[0]));
  // Right-aligned against [N, C, ...], every dimension but C's must be 1.
  bool ok = c.shape.size() <= rank;
  for (std::size_t i = 0; ok && i < c.shape.size(); ++i) {
    const std::size_t dim = rank - c.shape.size() + i;
    ok = c.shape[i] == 1 || (dim == 1 && c.shape[i] == channels);
  }
  if (!ok || c.numel() != channels)
    unsupported(what + " of shape " + shape_str(c.shape) + " does not broadcast per channel over [N, " +
                shape_str(x.shape).substr(1) + "; only scalars and per-channel constants are supported");
  return as_floats(c);
}

void Converter::convert_arithmetic(const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  if (node.input_size() != 2) throw IoError(m_label + ": needs two inputs");
  const bool const_a = m_values.at(node.input(0)).is_const, const_b = m_values.at(node.input(1)).is_const;
  if (!const_a && !const_b) {
    const Value& a = computed(node, 0);
    const Value& b = computed(node, 1);
    if (op != "Add") unsupported(op + " of two computed values is not supported (only Add, a residual connection)");
    if (a.shape != b.shape)
      unsupported("Add of [N, " + shape_str(a.shape).substr(1) + " and [N, " + shape_str(b.shape).substr(1) +
                  " needs broadcasting between computed values, which is not supported");
    GraphStep s;
    s.op = GraphOp::Add;
    s.inputs = {a.slot, b.slot};
    return define(node.output(0), emit(std::move(s), a.shape));
  }
  const Value& x = computed(node, const_a ? 1 : 0);
  const std::vector<float> c = per_channel(constant(node, const_a ? 0 : 1), x, "the constant operand");
  const std::size_t n = c.size();
  std::vector<float> scale(n, 1.0f), shift(n, 0.0f);
  for (std::size_t i = 0; i < n; ++i) {
    if (op == "Add") {
      shift[i] = c[i];
    } else if (op == "Sub") {
      scale[i] = const_a ? -1.0f : 1.0f;  // c − x or x − c
      shift[i] = const_a ? c[i] : -c[i];
    } else if (op == "Mul") {
      scale[i] = c[i];
    } else {
      if (const_a) unsupported("division of a constant by a computed value is not supported");
      if (c[i] == 0.0f) throw IoError(m_label + ": division by a zero constant");
      // x / c as x · (1/c): one rounding more than the division (≤ 1 ulp relative), far below
      // the float32 tolerance anyone compares logits with.
      scale[i] = 1.0f / c[i];
    }
  }
  if (op == "Add" || (op == "Sub" && !const_a)) {
    if (fold_into_layer(x, node.input(const_a ? 1 : 0), std::vector<double>(n, 1.0),
                        std::vector<double>(shift.begin(), shift.end())))
      return define(node.output(0), x);
  }
  define(node.output(0), emit_affine(x, std::move(scale), std::move(shift)));
}

void Converter::convert_leaky_relu(const onnx::NodeProto& node) {
  const Value& x = computed(node, 0);
  const float alpha = attr_float(node, "alpha", 0.01f);
  const std::size_t c = x.shape.empty() ? 1 : static_cast<std::size_t>(x.shape[0]);
  const Value positive = emit_unary(GraphOp::Relu, x);
  const Value negated = emit_affine(x, std::vector<float>(c, -1.0f), std::vector<float>(c, 0.0f));
  const Value negative =
      emit_affine(emit_unary(GraphOp::Relu, negated), std::vector<float>(c, -alpha), std::vector<float>(c, 0.0f));
  GraphStep s;
  s.op = GraphOp::Add;
  s.inputs = {positive.slot, negative.slot};
  define(node.output(0), emit(std::move(s), x.shape));
}

void Converter::convert_clip(const onnx::NodeProto& node) {
  const Value& x = computed(node, 0);
  const float inf = std::numeric_limits<float>::infinity();
  auto bound = [&](int i, const char* attr, float fallback) {
    if (has_input(node, i)) {
      const Constant& b = constant(node, i);
      if (b.numel() != 1) unsupported("the Clip bounds must be scalars");
      return static_cast<float>(b.values[0]);
    }
    return attr_float(node, attr, fallback);  // opsets before 11 held them as attributes
  };
  const float lo = bound(1, "min", -inf), hi = bound(2, "max", inf);
  if (!(lo < hi))
    unsupported("Clip bounds [" + std::to_string(lo) + ", " + std::to_string(hi) + "] are empty or a point");
  const std::size_t c = x.shape.empty() ? 1 : static_cast<std::size_t>(x.shape[0]);
  auto affine = [&](const Value& v, float scale, float shift) {
    return emit_affine(v, std::vector<float>(c, scale), std::vector<float>(c, shift));
  };
  if (lo == -inf && hi == inf) return define(node.output(0), x);
  if (hi == inf)  // lo + relu(x − lo)
    return define(node.output(0), affine(emit_unary(GraphOp::Relu, affine(x, 1.0f, -lo)), 1.0f, lo));
  if (lo == -inf)  // hi − relu(hi − x)
    return define(node.output(0), affine(emit_unary(GraphOp::Relu, affine(x, -1.0f, hi)), -1.0f, hi));
  const Value low = affine(emit_unary(GraphOp::Relu, affine(x, 1.0f, -lo)), 1.0f, lo);
  const Value high = affine(emit_unary(GraphOp::Relu, affine(x, 1.0f, -hi)), -1.0f, 0.0f);
  GraphStep s;
  s.op = GraphOp::Add;
  s.inputs = {low.slot, high.slot};
  define(node.output(0), emit(std::move(s), x.shape));
}

}  // namespace aegis::nn::onnx_import

#endif  // AEGIS_HAS_ONNX
