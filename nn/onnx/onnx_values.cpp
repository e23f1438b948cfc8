#include "core/config.h"
#if AEGIS_HAS_ONNX

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "nn/onnx/onnx_values.h"

namespace aegis::nn::onnx_import {

namespace {

constexpr std::int64_t kMaxElements = std::int64_t{1} << 34;  // 64 GiB of floats: no real model is larger

std::size_t element_size(int type) {
  switch (type) {
    case onnx::TensorProto_DataType_FLOAT:
    case onnx::TensorProto_DataType_INT32:
      return 4;
    case onnx::TensorProto_DataType_DOUBLE:
    case onnx::TensorProto_DataType_INT64:
      return 8;
    default:
      return 0;
  }
}

// Reads `bytes` bytes at `offset` of the external file `location` (relative to the model).
std::string read_external(const onnx::TensorProto& t, const std::string& what, const Context& ctx, std::size_t bytes) {
  std::string location;
  std::int64_t offset = 0, length = -1;
  for (const auto& entry : t.external_data()) {
    try {
      if (entry.key() == "location") location = entry.value();
      if (entry.key() == "offset") offset = std::stoll(entry.value());
      if (entry.key() == "length") length = std::stoll(entry.value());
    } catch (const std::exception&) {
      AEGIS_THROW(IoError, ctx.name << ": tensor '" << what << "' has external data field '" << entry.key() << "' = '"
                                    << entry.value() << "', not a number");
    }
  }
  if (ctx.base_dir.empty())
    AEGIS_THROW(IoError, ctx.name << ": tensor '" << what << "' refers to external data, which is not read here");
  // External data must lie beside the model: no absolute paths and no way out of its folder.
  if (location.empty() || location[0] == '/' || location.find("..") != std::string::npos)
    AEGIS_THROW(IoError, ctx.name << ": tensor '" << what << "' has external data location '" << location
                                  << "'; expected a file name relative to the model's folder");
  if (offset < 0 || (length >= 0 && static_cast<std::size_t>(length) != bytes))
    AEGIS_THROW(IoError, ctx.name << ": tensor '" << what << "' has external data offset " << offset << " and length "
                                  << length << " where its shape needs " << bytes << " bytes");
  const std::string file = ctx.base_dir + "/" + location;
  std::ifstream in(file, std::ios::binary);
  if (!in)
    AEGIS_THROW(IoError, ctx.name << ": cannot open external data file '" << file << "' of tensor '" << what << "'");
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::int64_t>(in.tellg());
  if (size < offset || static_cast<std::size_t>(size - offset) < bytes)
    AEGIS_THROW(IoError, ctx.name << ": external data file '" << file << "' holds " << size << " bytes; tensor '"
                                  << what << "' needs " << bytes << " at offset " << offset << " (truncated?)");
  std::string out(bytes, '\0');
  in.seekg(offset);
  in.read(out.data(), static_cast<std::streamsize>(bytes));
  if (!in)
    AEGIS_THROW(IoError, ctx.name << ": reading external data of tensor '" << what << "' from '" << file << "' failed");
  return out;
}

template <class T>
void decode_raw(const std::string& raw, std::vector<double>& out) {
  // ONNX stores raw data little-endian, as every platform aegis builds for is.
  for (std::size_t i = 0; i < out.size(); ++i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
    out[i] = static_cast<double>(v);
  }
}

double binary(const std::string& op, double a, double b, bool integer) {
  if (op == "Add") return a + b;
  if (op == "Sub") return a - b;
  if (op == "Mul") return a * b;
  return integer ? std::trunc(a / b) : a / b;  // Div; ONNX integer division truncates
}

std::int64_t normalize_axis(std::int64_t axis, std::int64_t rank, const std::string& label) {
  if (axis < 0) axis += rank;
  AEGIS_CHECK_AS(IoError, axis >= 0 && axis < rank, label << ": axis out of range for rank " << rank);
  return axis;
}

}  // namespace

std::string node_label(const onnx::NodeProto& node, int index) {
  std::ostringstream os;
  if (node.name().empty())
    os << "node #" << index;
  else
    os << "node '" << node.name() << "'";
  os << " (" << node.op_type() << ")";
  return os.str();
}

Constant read_tensor(const onnx::TensorProto& t, const std::string& what, const Context& ctx) {
  Constant c;
  std::int64_t numel = 1;
  for (std::int64_t d : t.dims()) {
    if (d < 0 || __builtin_mul_overflow(numel, d, &numel) || numel > kMaxElements)
      AEGIS_THROW(IoError, ctx.name << ": tensor '" << what << "' has an invalid or too large shape");
    c.shape.push_back(d);
  }
  const int type = t.data_type();
  const std::size_t esize = element_size(type);
  if (esize == 0)
    AEGIS_THROW(Unsupported, ctx.name << ": tensor '" << what << "' has element type "
                                      << onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(type))
                                      << "; supported: FLOAT, DOUBLE, INT32, INT64");
  c.integer = type == onnx::TensorProto_DataType_INT32 || type == onnx::TensorProto_DataType_INT64;
  // Sizes are checked against the data present before anything is allocated for the shape.
  const std::size_t bytes = static_cast<std::size_t>(numel) * esize;
  const bool external = t.data_location() == onnx::TensorProto_DataLocation_EXTERNAL;
  if (external || t.has_raw_data()) {
    if (!external && t.raw_data().size() != bytes)
      AEGIS_THROW(IoError, ctx.name << ": tensor '" << what << "' holds " << t.raw_data().size() << " bytes; its shape "
                                    << shape_str(c.shape) << " needs " << bytes);
    const std::string raw = external ? read_external(t, what, ctx, bytes) : t.raw_data();
    c.values.resize(static_cast<std::size_t>(numel));
    switch (type) {
      case onnx::TensorProto_DataType_FLOAT:
        decode_raw<float>(raw, c.values);
        break;
      case onnx::TensorProto_DataType_DOUBLE:
        decode_raw<double>(raw, c.values);
        break;
      case onnx::TensorProto_DataType_INT32:
        decode_raw<std::int32_t>(raw, c.values);
        break;
      default:
        decode_raw<std::int64_t>(raw, c.values);
        break;
    }
    return c;
  }
  auto take = [&](const auto& field) {
    if (field.size() != numel)
      AEGIS_THROW(IoError, ctx.name << ": tensor '" << what << "' holds " << field.size() << " values; its shape "
                                    << shape_str(c.shape) << " needs " << numel);
    c.values.assign(field.begin(), field.end());
  };
  switch (type) {
    case onnx::TensorProto_DataType_FLOAT:
      take(t.float_data());
      break;
    case onnx::TensorProto_DataType_DOUBLE:
      take(t.double_data());
      break;
    case onnx::TensorProto_DataType_INT32:
      take(t.int32_data());
      break;
    default:
      take(t.int64_data());
      break;
  }
  return c;
}

std::vector<float> as_floats(const Constant& c) {
  return std::vector<float>(c.values.begin(), c.values.end());
}

std::int64_t to_int(double v, const std::string& label) {
  constexpr double kLimit = 4611686018427387904.0;  // 2^62
  if (!(std::fabs(v) <= kLimit) || v != std::trunc(v))
    AEGIS_THROW(IoError, label << ": " << v << " is not an integer of a usable size");
  return static_cast<std::int64_t>(v);
}

const onnx::AttributeProto* find_attribute(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

std::int64_t attr_int(const onnx::NodeProto& node, const std::string& name, std::int64_t fallback) {
  const auto* a = find_attribute(node, name);
  return a ? a->i() : fallback;
}

float attr_float(const onnx::NodeProto& node, const std::string& name, float fallback) {
  const auto* a = find_attribute(node, name);
  return a ? a->f() : fallback;
}

std::vector<std::int64_t> attr_ints(const onnx::NodeProto& node, const std::string& name,
                                    std::vector<std::int64_t> fallback) {
  const auto* a = find_attribute(node, name);
  return a ? std::vector<std::int64_t>(a->ints().begin(), a->ints().end()) : fallback;
}

std::string attr_string(const onnx::NodeProto& node, const std::string& name, const std::string& fallback) {
  const auto* a = find_attribute(node, name);
  return a ? a->s() : fallback;
}

bool fold_constant_node(const onnx::NodeProto& node, int index, const std::vector<const Constant*>& in,
                        std::vector<Constant>& out, const Context& ctx) {
  const std::string& op = node.op_type();
  const std::string label = ctx.name + ": " + node_label(node, index);
  auto input = [&](std::size_t i) -> const Constant& {
    AEGIS_CHECK_AS(IoError, i < in.size() && in[i] != nullptr, label << ": input " << i << " is missing");
    return *in[i];
  };
  // Axes of Unsqueeze/Squeeze: an input from opset 13, an attribute before.
  auto axes_of = [&]() {
    if (in.size() > 1 && in[1] != nullptr) {
      std::vector<std::int64_t> axes;
      for (double v : in[1]->values) axes.push_back(to_int(v, label));
      return axes;
    }
    return attr_ints(node, "axes");
  };
  Constant r;
  if (op == "Identity" || op == "Cast") {
    r = input(0);
    if (op == "Cast") {
      const auto to = attr_int(node, "to", onnx::TensorProto_DataType_FLOAT);
      r.integer = to == onnx::TensorProto_DataType_INT32 || to == onnx::TensorProto_DataType_INT64;
      if (r.integer)
        for (double& v : r.values) v = std::trunc(v);
    }
  } else if (op == "Shape" && attr_int(node, "start", 0) == 0 && !find_attribute(node, "end")) {
    r.integer = true;
    for (std::int64_t d : input(0).shape) r.values.push_back(static_cast<double>(d));
    r.shape = {r.numel()};
  } else if (op == "Gather") {
    const Constant& data = input(0);
    const Constant& idx = input(1);
    AEGIS_CHECK_AS(Unsupported, data.shape.size() == 1 && attr_int(node, "axis", 0) == 0 && idx.shape.size() <= 1,
                   label << ": only Gather along axis 0 of a 1-d constant is evaluated at load");
    r.integer = data.integer;
    r.shape = idx.shape;
    for (double v : idx.values) {
      auto i = to_int(v, label);
      if (i < 0) i += data.numel();
      AEGIS_CHECK_AS(IoError, i >= 0 && i < data.numel(), label << ": index " << v << " out of range");
      r.values.push_back(data.values[static_cast<std::size_t>(i)]);
    }
  } else if (op == "Unsqueeze" || op == "Squeeze") {
    r = input(0);
    const auto axes = axes_of();
    if (op == "Unsqueeze") {
      const auto rank = static_cast<std::int64_t>(r.shape.size() + axes.size());
      std::vector<char> inserted(static_cast<std::size_t>(rank), 0);
      for (auto a : axes) {
        char& slot = inserted[static_cast<std::size_t>(normalize_axis(a, rank, label))];
        AEGIS_CHECK_AS(IoError, !slot, label << ": axis " << a << " repeated");
        slot = 1;
      }
      Shape s;
      std::size_t next = 0;
      for (std::int64_t d = 0; d < rank; ++d)
        s.push_back(inserted[static_cast<std::size_t>(d)] ? 1 : r.shape.at(next++));
      r.shape = s;
    } else {
      Shape s;
      const auto rank = static_cast<std::int64_t>(r.shape.size());
      for (std::int64_t d = 0; d < rank; ++d) {
        bool drop = axes.empty() ? r.shape[static_cast<std::size_t>(d)] == 1 : false;
        for (auto a : axes) drop = drop || normalize_axis(a, rank, label) == d;
        if (!drop) s.push_back(r.shape[static_cast<std::size_t>(d)]);
      }
      r.shape = s;
    }
  } else if (op == "Concat") {
    AEGIS_CHECK_AS(Unsupported, !in.empty(), label << ": no inputs");
    r.integer = input(0).integer;
    for (std::size_t i = 0; i < in.size(); ++i) {
      AEGIS_CHECK_AS(Unsupported, input(i).shape.size() <= 1, label << ": only 1-d constants are concatenated at load");
      r.values.insert(r.values.end(), in[i]->values.begin(), in[i]->values.end());
    }
    r.shape = {r.numel()};
  } else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    const Constant& a = input(0);
    const Constant& b = input(1);
    AEGIS_CHECK_AS(Unsupported, a.numel() == b.numel() || a.numel() == 1 || b.numel() == 1,
                   label << ": constants of shapes " << shape_str(a.shape) << " and " << shape_str(b.shape)
                         << " are not combined at load");
    r.integer = a.integer && b.integer;
    r.shape = a.numel() >= b.numel() ? a.shape : b.shape;
    const std::int64_t n = std::max(a.numel(), b.numel());
    for (std::int64_t i = 0; i < n; ++i) {
      const double x = a.values[static_cast<std::size_t>(a.numel() == 1 ? 0 : i)];
      const double y = b.values[static_cast<std::size_t>(b.numel() == 1 ? 0 : i)];
      AEGIS_CHECK_AS(Unsupported, x != kBatch && y != kBatch,
                     label << ": arithmetic on the batch size cannot be resolved at load");
      r.values.push_back(binary(op, x, y, r.integer));
    }
  } else if (!fold_tensor_node(node, in, label, ctx, r)) {
    return false;
  }
  out.assign(1, std::move(r));
  return true;
}

void inline_external_data(onnx::TensorProto& t, const Context& ctx) {
  if (t.data_location() != onnx::TensorProto_DataLocation_EXTERNAL) return;
  std::size_t element = 0;
  switch (t.data_type()) {
    case onnx::TensorProto_DataType_BOOL:
    case onnx::TensorProto_DataType_INT8:
    case onnx::TensorProto_DataType_UINT8:
      element = 1;
      break;
    case onnx::TensorProto_DataType_FLOAT16:
    case onnx::TensorProto_DataType_BFLOAT16:
    case onnx::TensorProto_DataType_INT16:
    case onnx::TensorProto_DataType_UINT16:
      element = 2;
      break;
    case onnx::TensorProto_DataType_UINT32:
      element = 4;
      break;
    case onnx::TensorProto_DataType_UINT64:
      element = 8;
      break;
    default:
      element = element_size(t.data_type());
  }
  if (element == 0)
    AEGIS_THROW(Unsupported, ctx.name << ": tensor '" << t.name() << "' of element type " << t.data_type()
                                      << " has external data, which aegis cannot copy");
  std::int64_t numel = 1;
  for (auto d : t.dims())
    if (d < 0 || d > kMaxElements || (numel *= d) > kMaxElements)
      AEGIS_THROW(IoError, ctx.name << ": tensor '" << t.name() << "' has an invalid shape");
  std::string bytes = read_external(t, t.name(), ctx, static_cast<std::size_t>(numel) * element);
  t.clear_external_data();
  t.set_data_location(onnx::TensorProto_DataLocation_DEFAULT);
  t.set_raw_data(std::move(bytes));
}

}  // namespace aegis::nn::onnx_import

#endif  // AEGIS_HAS_ONNX
