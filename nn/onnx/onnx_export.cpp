// Writing a trained GraphModule back into its source ONNX graph (nn/onnx_export.h).
#include "nn/onnx_export.h"

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "core/atomic_file.h"
#include "core/config.h"
#include "core/error.h"

#if AEGIS_HAS_ONNX
#include "nn/onnx/onnx_values.h"
#endif

namespace aegis::nn {

#if !AEGIS_HAS_ONNX

void save_onnx(const GraphModule&, const std::string& path, const std::map<std::string, std::string>&) {
  AEGIS_THROW(Unsupported, path << ": this aegis was built without ONNX support (install libonnx-dev and "
                                   "libprotobuf-dev, then configure and build again)");
}

#else

namespace {

// A float32 initializer, little-endian raw data (as every platform aegis builds for stores floats).
void fill_tensor(onnx::TensorProto& t, const std::string& name, const Shape& dims, const std::vector<float>& values) {
  t.Clear();
  t.set_name(name);
  t.set_data_type(onnx::TensorProto_DataType_FLOAT);
  for (std::int64_t d : dims) t.add_dims(d);
  std::string raw(values.size() * sizeof(float), '\0');
  if (!values.empty()) std::memcpy(raw.data(), values.data(), raw.size());
  t.set_raw_data(std::move(raw));
}

void set_float_attribute(onnx::NodeProto& node, const std::string& name, float value) {
  for (auto& a : *node.mutable_attribute())
    if (a.name() == name) {
      a.Clear();
      a.set_name(name);
      a.set_type(onnx::AttributeProto_AttributeType_FLOAT);
      a.set_f(value);
      return;
    }
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
  a->set_f(value);
}

std::vector<float> host_values(const autograd::Var& v) {
  return v.value().to(Device::cpu()).to_vector<float>();
}

// The source file's graph and what the rewrite needs to know about its names.
class Rewriter {
 public:
  Rewriter(onnx::ModelProto& model, const std::string& source) : m_model(model), m_source(source) {
    onnx::GraphProto& g = *m_model.mutable_graph();
    for (int i = 0; i < g.initializer_size(); ++i) {
      m_initializer[g.initializer(i).name()] = i;
      m_names.insert(g.initializer(i).name());
    }
    for (const auto& in : g.input()) {
      m_names.insert(in.name());
      m_graph_inputs.insert(in.name());
    }
    for (const auto& out : g.output()) m_graph_outputs.insert(out.name());
    for (const auto& node : g.node()) {
      for (const auto& in : node.input()) ++m_readers[in];
      for (const auto& out : node.output()) m_names.insert(out);
    }
  }

  // Stores `values` as the initializer read by input `input` of `node`: in place when that input
  // is an initializer only this node reads in the source, else under a new name `fallback` (made
  // unique). The counts stay the source's: a weight two layers read gets a new name in both.
  void set_input_tensor(onnx::NodeProto& node, int input, const std::string& fallback, const Shape& dims,
                        const std::vector<float>& values) {
    onnx::GraphProto& g = *m_model.mutable_graph();
    const std::string old = input < node.input_size() ? node.input(input) : std::string();
    auto it = m_initializer.find(old);
    if (!old.empty() && it != m_initializer.end() && m_readers[old] == 1 && !m_graph_outputs.count(old)) {
      fill_tensor(*g.mutable_initializer(it->second), old, dims, values);
      return;
    }
    std::string name = fallback;
    for (int k = 1; m_names.count(name); ++k) name = fallback + "_" + std::to_string(k);
    if (name != fallback) m_renames.emplace_back(name, fallback);  // finish() takes `fallback` if it frees up
    m_names.insert(name);
    m_initializer[name] = g.initializer_size();
    fill_tensor(*g.add_initializer(), name, dims, values);
    // IR versions before 4 list every initializer among the graph's inputs too.
    if (m_model.ir_version() < 4) {
      auto* in = g.add_input();
      in->set_name(name);
      in->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto_DataType_FLOAT);
      for (std::int64_t d : dims)
        in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(d);
    }
    while (node.input_size() <= input) node.add_input("");
    node.set_input(input, name);
  }

  // Drops the initializers no node reads any more (the replaced weights, an absorbed BatchNorm's
  // statistics), and copies external data of the others into the file.
  void finish(const std::string& base_dir) {
    onnx::GraphProto& g = *m_model.mutable_graph();
    std::map<std::string, int> readers;
    for (const auto& node : g.node())
      for (const auto& in : node.input()) ++readers[in];
    google::protobuf::RepeatedPtrField<onnx::TensorProto> kept;
    for (auto& t : *g.mutable_initializer()) {
      if (readers[t.name()] == 0 && !m_graph_outputs.count(t.name()) && !m_graph_inputs.count(t.name())) continue;
      onnx_import::inline_external_data(t, onnx_import::Context{m_source, base_dir});
      kept.Add(std::move(t));
    }
    g.mutable_initializer()->Swap(&kept);
    // A weight read by two layers (tied weights) became two initializers; the first could not take
    // its layer's name "<layer>.weight" while the shared one was still read. Now that it is gone,
    // it does, so that the file reads back with the layer names the model has.
    std::set<std::string> used(m_graph_inputs.begin(), m_graph_inputs.end());
    used.insert(m_graph_outputs.begin(), m_graph_outputs.end());
    for (const auto& t : g.initializer()) used.insert(t.name());
    for (const auto& node : g.node()) {
      used.insert(node.input().begin(), node.input().end());
      used.insert(node.output().begin(), node.output().end());
    }
    for (const auto& [fresh, preferred] : m_renames) {
      if (used.count(preferred)) continue;
      used.insert(preferred);
      for (auto& t : *g.mutable_initializer())
        if (t.name() == fresh) t.set_name(preferred);
      for (auto& in : *g.mutable_input())
        if (in.name() == fresh) in.set_name(preferred);
      for (auto& node : *g.mutable_node())
        for (auto& in : *node.mutable_input())
          if (in == fresh) in = preferred;
    }
  }

 private:
  onnx::ModelProto& m_model;
  std::string m_source;
  std::map<std::string, int> m_initializer;
  std::map<std::string, int> m_readers;
  std::set<std::string> m_names, m_graph_inputs, m_graph_outputs;
  std::vector<std::pair<std::string, std::string> > m_renames;  // (name given, name wanted)
};

}  // namespace

void save_onnx(const GraphModule& model, const std::string& path, const std::map<std::string, std::string>& metadata) {
  const OnnxOrigin& origin = model.onnx_origin();
  AEGIS_CHECK(!origin.path.empty(), path << ": " << model.source()
                                         << " was not read from an ONNX file; aegis writes ONNX only for a model "
                                            "imported from one (train --init net.onnx)");
  const std::string& source = origin.path;
  std::ifstream in(source, std::ios::binary);
  AEGIS_CHECK_AS(IoError, in.good(),
                 source << ": cannot open the source model for reading (needed to write " << path << ")");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  onnx::ModelProto m;
  AEGIS_CHECK_AS(IoError, m.ParseFromString(buffer.str()) && m.has_graph(),
                 source << ": the source model does not parse any more");
  onnx::GraphProto& g = *m.mutable_graph();
  AEGIS_CHECK_AS(IoError, g.node_size() == origin.num_nodes,
                 source << ": has " << g.node_size() << " nodes, not the " << origin.num_nodes
                        << " it had when it was loaded; the file changed since");

  std::map<std::string, autograd::Var> params;
  for (const auto& [name, p] : model.named_parameters()) params[name] = p;
  std::size_t written = 0;
  Rewriter rw(m, source);
  for (const OnnxLayerOrigin& l : origin.layers) {
    AEGIS_CHECK_AS(IoError,
                   l.node >= 0 && l.node < g.node_size() && g.node(l.node).op_type() == l.op_type &&
                       g.node(l.node).input_size() > 1 && g.node(l.node).input(1) == l.weight,
                   source << ": node #" << l.node << " is no longer the " << l.op_type << " of layer '" << l.layer
                          << "'; the file changed since it was loaded");
    onnx::NodeProto& node = *g.mutable_node(l.node);
    auto w = params.find(l.layer + ".weight");
    AEGIS_CHECK(w != params.end(), path << ": layer '" << l.layer << "' has no weight parameter");
    auto b = params.find(l.layer + ".bias");
    const bool has_bias = b != params.end();
    written += has_bias ? 2 : 1;
    const Shape ws = w->second.shape();
    std::vector<float> weight = host_values(w->second);
    Shape dims = ws;
    if (l.op_type != "Conv") {
      // Linear holds [out, in]; MatMul's B and Gemm's B with transB = 0 are [in, out].
      if (l.weight_in_out) {
        const std::int64_t out_f = ws[0], in_f = ws[1];
        std::vector<float> t(weight.size());
        for (std::int64_t o = 0; o < out_f; ++o)
          for (std::int64_t i = 0; i < in_f; ++i)
            t[static_cast<std::size_t>(i * out_f + o)] = weight[static_cast<std::size_t>(o * in_f + i)];
        weight.swap(t);
        dims = {in_f, out_f};
      }
      if (l.op_type == "MatMul" && has_bias) {
        // A MatMul whose bias Add was folded into it: a Gemm (transB = 0) with the bias as C.
        node.set_op_type("Gemm");
        node.clear_attribute();
      }
      if (node.op_type() == "Gemm") {
        set_float_attribute(node, "alpha", 1.0f);
        set_float_attribute(node, "beta", 1.0f);
      }
    }
    rw.set_input_tensor(node, 1, l.layer + ".weight", dims, weight);
    if (has_bias) rw.set_input_tensor(node, 2, l.layer + ".bias", b->second.shape(), host_values(b->second));
    for (const auto& [index, input] : l.absorbed) {
      AEGIS_CHECK_AS(IoError, index >= 0 && index < g.node_size() && input < g.node(index).input_size(),
                     source << ": node #" << index << " folded into layer '" << l.layer << "' is gone");
      // Its effect is in the layer's weights now: the node passes the layer's output on.
      onnx::NodeProto& folded = *g.mutable_node(index);
      const std::string x = folded.input(input), y = folded.output(0);
      folded.set_op_type("Identity");
      folded.set_domain("");
      folded.clear_input();
      folded.clear_output();
      folded.clear_attribute();
      folded.add_input(x);
      folded.add_output(y);
    }
  }
  AEGIS_CHECK(written == params.size(), path << ": the model has " << params.size()
                                             << " parameters but its ONNX source "
                                             << "accounts for " << written << "; it cannot be written back");
  const auto slash = source.find_last_of('/');
  rw.finish(slash == std::string::npos ? "." : source.substr(0, slash));

  // The source's own metadata stays; its aegis.* entries (a ledger of an earlier run) do not.
  google::protobuf::RepeatedPtrField<onnx::StringStringEntryProto> props;
  for (auto& p : *m.mutable_metadata_props())
    if (p.key().rfind("aegis.", 0) != 0 && !metadata.count(p.key())) props.Add(std::move(p));
  for (const auto& [key, value] : metadata) {
    auto* p = props.Add();
    p->set_key(key);
    p->set_value(value);
  }
  m.mutable_metadata_props()->Swap(&props);
  m.set_producer_name("aegis");
  m.clear_producer_version();

  std::string bytes;
  AEGIS_CHECK_AS(IoError, m.SerializeToString(&bytes), path << ": the model does not serialize (over 2 GiB?)");
  write_file_atomically(path, [&](int fd) { return write_fully(fd, bytes.data(), bytes.size()); });
}

#endif  // AEGIS_HAS_ONNX

}  // namespace aegis::nn
