// Internal to the ONNX import (nn/onnx_import.h): constants as the loader sees them, decoding
// of TensorProto (inline or external data), attribute access, and the evaluation at load time of
// the shape arithmetic that exporters emit. Only compiled when the build has ONNX support.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace aegis::nn::onnx_import {

// The batch size inside folded shape constants: unknown at load, it stands for "dimension 0 of
// the input". Exactly representable as a double and far from any real size or index.
constexpr double kBatch = -1099511627776.0;  // −2^40

// A tensor known at load: an initializer, a Constant node's value, or a folded result.
struct Constant {
  Shape shape;
  std::vector<double> values;
  bool integer = false;
  std::int64_t numel() const { return static_cast<std::int64_t>(values.size()); }
};

struct Context {
  std::string name;      // the model's name in messages (its path)
  std::string base_dir;  // where external data files are looked up; "" refuses them
};

// "node 'conv1' (Conv)", or "node #3 (Conv)" for an unnamed node.
std::string node_label(const onnx::NodeProto& node, int index);

// Decodes a tensor; `what` names it in errors. Throws IoError for malformed or unreadable data,
// Unsupported for element types other than float, double, int32 and int64.
Constant read_tensor(const onnx::TensorProto& t, const std::string& what, const Context& ctx);
std::vector<float> as_floats(const Constant& c);
// Moves a tensor's external data into the tensor itself (raw_data), so that the model can be
// written elsewhere; a tensor with inline data is left as it is.
void inline_external_data(onnx::TensorProto& t, const Context& ctx);
// `v` as an integer (shape entries, indices); IoError naming `label` unless it is a whole number
// within ±2^62 (or kBatch), so that no later size arithmetic can overflow.
std::int64_t to_int(double v, const std::string& label);

const onnx::AttributeProto* find_attribute(const onnx::NodeProto& node, const std::string& name);
std::int64_t attr_int(const onnx::NodeProto& node, const std::string& name, std::int64_t fallback);
float attr_float(const onnx::NodeProto& node, const std::string& name, float fallback);
std::vector<std::int64_t> attr_ints(const onnx::NodeProto& node, const std::string& name,
                                    std::vector<std::int64_t> fallback = {});
std::string attr_string(const onnx::NodeProto& node, const std::string& name, const std::string& fallback);

// Evaluates `node` whose inputs are all constants (absent optional inputs are null). Returns
// false when the operator is not one of the shape-arithmetic operators evaluated at load.
bool fold_constant_node(const onnx::NodeProto& node, int index, const std::vector<const Constant*>& inputs,
                        std::vector<Constant>& outputs, const Context& ctx);
// The n-d operators of that arithmetic (ConstantOfShape, Reshape, Transpose, Slice; onnx_fold.cpp),
// into `result`; false for other operators.
bool fold_tensor_node(const onnx::NodeProto& node, const std::vector<const Constant*>& inputs, const std::string& label,
                      const Context& ctx, Constant& result);

}  // namespace aegis::nn::onnx_import
