// Internal to the ONNX import: the walk over a graph's nodes that builds a GraphModule. Every
// value is either a constant known at load (initializers, Constant nodes, folded shape
// arithmetic) or a value computed at run time, of which the converter knows one example's shape
// (the batch dimension is left out: it is whatever the caller passes).
#pragma once

#include <array>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "nn/graph_module.h"
#include "nn/onnx/onnx_values.h"

namespace aegis::nn::onnx_import {

// Pads of H and W: top, left, bottom, right (ONNX's Conv/pool order [y1, x1, y2, x2]).
using Pads = std::array<std::int64_t, 4>;

struct Value {
  bool is_const = false;
  Constant constant;  // is_const
  int slot = -1;      // computed: the GraphModule value
  Shape shape;        // computed: one example's shape
  // Computed: zero padding of a Pad node not emitted as a step, which the value's only reader (a
  // Conv or pooling node) adds to its own pads; `shape` is the unpadded one.
  Pads zero_pads{};
  bool non_negative = false;  // computed: known ≥ 0 (a ReLU, Sigmoid or Softplus output, ...)
};

// A square 2-d window: kernel k, stride s, dilation d (Conv only; 1 for pooling), pads per side.
struct Window {
  std::int64_t kernel = 1, stride = 1, dilation = 1;
  Pads pads{};
  bool symmetric() const { return pads[0] == pads[1] && pads[0] == pads[2] && pads[0] == pads[3]; }
};

class Converter {
 public:
  Converter(const onnx::GraphProto& graph, Context ctx);
  // Builds the module; throws IoError / Unsupported naming the node.
  std::shared_ptr<GraphModule> run();

 private:
  void read_initializers();
  void read_input();
  void convert_node(const onnx::NodeProto& node, int index);
  void finish();

  // The converters of one operator family each (onnx_layers.cpp, onnx_elementwise.cpp).
  void convert_conv(const onnx::NodeProto& node);
  void convert_gemm(const onnx::NodeProto& node, bool matmul);
  void convert_batch_norm(const onnx::NodeProto& node);
  void convert_pool(const onnx::NodeProto& node);  // onnx_windows.cpp
  void convert_reshape(const onnx::NodeProto& node);
  void convert_concat(const onnx::NodeProto& node);
  void convert_arithmetic(const onnx::NodeProto& node);
  void convert_leaky_relu(const onnx::NodeProto& node);
  void convert_clip(const onnx::NodeProto& node);
  void convert_pad(const onnx::NodeProto& node);  // onnx_windows.cpp

  // Reads the window attributes of Conv and the pooling operators (`kernel` = the weight's).
  Window read_window(const onnx::NodeProto& node, std::int64_t kernel);
  // Input 0 of a Conv or pooling node with the zero pads of a folded Pad node added to `win`'s
  // pads; when those differ per side or exceed `max_padding`, a Pad step of them filled with
  // `fill` (and `win`'s pads then 0), so that the op's own padding is symmetric and in range.
  Value padded_input(const onnx::NodeProto& node, Window& win, float fill, std::int64_t max_padding);
  // Whether the zero padding `pads` of `x` (the value `name`) folds into the padding of `reader`,
  // its only reader (onnx_windows.cpp says when that is exact).
  bool pad_folds_into(const onnx::NodeProto& reader, const std::string& name, const Value& x, const Pads& pads);
  Value emit_pad(const Value& x, const Pads& pads, float value);
  // Folds y = x·scale + shift (per output channel) into the Conv2d/Linear that produced x, when
  // nothing else reads x and the layer has a bias. Returns whether it did.
  bool fold_into_layer(const Value& x, const std::string& name, const std::vector<double>& scale,
                       const std::vector<double>& shift);
  // Input i of the current node: present, and computed (or constant). Only a Conv or pooling
  // node's input 0 may carry a folded Pad node's zero_pads (`padded_ok`).
  const Value& computed(const onnx::NodeProto& node, int i, bool padded_ok = false);
  const Constant& constant(const onnx::NodeProto& node, int i);
  bool has_input(const onnx::NodeProto& node, int i) const;
  // Appends a step reading `inputs`; its output gets one example's shape `shape`.
  Value emit(GraphStep step, Shape shape);
  // y = x·scale[c] + shift[c] over the channel (or feature) dimension.
  Value emit_affine(const Value& x, std::vector<float> scale, std::vector<float> shift);
  Value emit_unary(GraphOp op, const Value& x);
  // Records layer step `v` as node m_index's layer `name` (OnnxOrigin).
  void note_layer(const onnx::NodeProto& node, const Value& v, const std::string& name, bool weight_in_out);
  void define(const std::string& name, Value v);
  // The per-channel vector a constant broadcasts to over `x`, or throws Unsupported.
  std::vector<float> per_channel(const Constant& c, const Value& x, const std::string& what);
  // The only node reading `name`, or null when several (or none, or a graph output) read it.
  const onnx::NodeProto* sole_consumer(const std::string& name) const;
  bool is_static(const std::string& name) const { return m_static.count(name) > 0; }
  std::string layer_name(const onnx::NodeProto& node, const std::string& weight_name);
  [[noreturn]] void unsupported(const std::string& what) const;

  const onnx::GraphProto& m_graph;
  Context m_ctx;
  std::shared_ptr<GraphModule> m_module;
  std::map<std::string, Value> m_values;
  std::map<std::string, std::vector<const onnx::NodeProto*>> m_consumers;
  std::set<std::string> m_static;  // initializers and Constant nodes' outputs
  std::set<std::string> m_layer_names;
  // Layer steps whose output no other step has read yet: BatchNorm and a bias Add fold into them.
  std::map<int, std::shared_ptr<Module>> m_layer_of_slot;
  // What the export (nn/onnx_export.h) needs: each layer's node, and the nodes folded into it.
  OnnxOrigin m_origin;
  std::map<int, std::size_t> m_origin_of_slot;
  std::string m_label;  // "model.onnx: node 'conv1' (Conv)"
  int m_index = 0;
  std::int64_t m_fixed_batch = 0;  // the input's batch size when the graph fixes it
  std::string m_input_name, m_output_name;
};

}  // namespace aegis::nn::onnx_import
