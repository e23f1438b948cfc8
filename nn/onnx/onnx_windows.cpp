// The ONNX operators with a window or padding: the window attributes of Conv and the pooling
// operators, MaxPool/AveragePool/GlobalAveragePool/ReduceMean (spatial), and Pad.
//
// aegis' convolution and pooling kernels pad the same p on all four sides (p ≤ k/2 for pooling).
// Other pads (ONNX's [top, left, bottom, right]) become a Pad step in front of the op, filled with
// zeros for Conv and AveragePool with count_include_pad = 1 (the zeros are then real elements of
// the window, as the op's own zero padding would be) and with −∞ for MaxPool (padding never
// wins; pads < kernel keep a real element in every window). A Pad node (mode constant, value 0)
// folds into its only reader's padding when that is exact: always for a Conv; for an AveragePool
// with count_include_pad = 1 or no pads of its own (its zeros count in the divisor, so the pool
// runs with count_include_pad = 1); for a MaxPool only when its input is known ≥ 0 (a ReLU,
// Sigmoid or Softplus output: a zero then never exceeds a window's real maximum) and every
// window keeps a real element. Not with ceil_mode: its rule for the last window looks at the
// padded size. Otherwise the Pad node is a step of its own.
// ceil_mode and count_include_pad = 0 run in the pooling kernels (kernels/pool.h) with symmetric
// pads; with other pads they are refused, since a Pad step would change the divisor or the
// ceil_mode rule.
#include "core/config.h"
#if AEGIS_HAS_ONNX

#include <algorithm>
#include <limits>

#include "kernels/pool.h"
#include "nn/onnx/onnx_converter.h"

namespace aegis::nn::onnx_import {

namespace {
// Windows and pads beyond any real image are refused before any size arithmetic with them.
constexpr std::int64_t kMaxWindow = std::int64_t{1} << 20;

std::string pads_str(const Pads& p) {
  return shape_str({p[0], p[1], p[2], p[3]});
}
bool any(const Pads& p) {
  return p != Pads{};
}
}  // namespace

// A square kernel with equal strides and non-negative pads; anything else is reported.
Window Converter::read_window(const onnx::NodeProto& node, std::int64_t kernel) {
  Window w;
  const std::string auto_pad = attr_string(node, "auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "VALID")
    unsupported("auto_pad '" + auto_pad + "' is not supported (export with explicit pads)");
  const auto ks = attr_ints(node, "kernel_shape", {kernel, kernel});
  if (ks.size() != 2 || ks[0] != ks[1] || ks[0] < 1)
    unsupported("kernel_shape " + shape_str(ks) + " is not a square 2-d kernel");
  w.kernel = ks[0];
  const auto strides = attr_ints(node, "strides", {1, 1});
  if (strides.size() != 2 || strides[0] != strides[1] || strides[0] < 1)
    unsupported("strides " + shape_str(strides) + " are not equal positive strides");
  w.stride = strides[0];
  const auto pads = attr_ints(node, "pads", {0, 0, 0, 0});
  if (pads.size() != 4 || *std::min_element(pads.begin(), pads.end()) < 0)
    unsupported("pads " + shape_str(pads) + " are not four non-negative values [top, left, bottom, right]");
  if (auto_pad != "VALID") w.pads = {pads[0], pads[1], pads[2], pads[3]};
  if (w.kernel > kMaxWindow || w.stride > kMaxWindow || *std::max_element(pads.begin(), pads.end()) > kMaxWindow)
    unsupported("kernel, stride or padding above " + std::to_string(kMaxWindow));
  const auto dilations = attr_ints(node, "dilations", {1, 1});
  if (node.op_type() != "Conv") {
    for (auto d : dilations)
      if (d != 1) unsupported("dilations " + shape_str(dilations) + " of a pooling are not supported (only 1)");
  } else if (dilations.size() != 2 || dilations[0] != dilations[1] || dilations[0] < 1 || dilations[0] > kMaxWindow) {
    unsupported("dilations " + shape_str(dilations) + " are not equal positive dilations");
  } else {
    w.dilation = dilations[0];
  }
  return w;
}

Value Converter::emit_pad(const Value& x, const Pads& pads, float value) {
  GraphStep s;
  s.op = GraphOp::Pad;
  s.inputs = {x.slot};
  s.pad = Pad2dOptions{pads[0], pads[1], pads[2], pads[3], value};
  Value v = emit(std::move(s), {x.shape[0], x.shape[1] + pads[0] + pads[2], x.shape[2] + pads[1] + pads[3]});
  v.non_negative = x.non_negative && value >= 0.0f;
  return v;
}

Value Converter::padded_input(const onnx::NodeProto& node, Window& win, float fill, std::int64_t max_padding) {
  Value x = computed(node, 0, true);
  for (std::size_t i = 0; i < 4; ++i) win.pads[i] += x.zero_pads[i];
  x.zero_pads = {};
  if (win.symmetric() && win.pads[0] <= max_padding) return x;
  Value padded = emit_pad(x, win.pads, fill);
  win.pads = {};
  return padded;
}

bool Converter::pad_folds_into(const onnx::NodeProto& reader, const std::string& name, const Value& x,
                               const Pads& pads) {
  const std::string& op = reader.op_type();
  if (reader.input_size() < 1 || reader.input(0) != name) return false;
  if (op == "Conv") return true;
  if (op != "MaxPool" && op != "AveragePool") return false;
  if (attr_int(reader, "ceil_mode", 0) != 0 || attr_string(reader, "auto_pad", "NOTSET") != "NOTSET") return false;
  const auto own = attr_ints(reader, "pads", {0, 0, 0, 0});
  const auto ks = attr_ints(reader, "kernel_shape");
  if (own.size() != 4 || ks.size() != 2) return false;  // convert_pool reports it
  if (op == "AveragePool")
    return attr_int(reader, "count_include_pad", 0) != 0 ||
           std::all_of(own.begin(), own.end(), [](auto p) { return p == 0; });
  if (!x.non_negative) return false;
  for (std::size_t i = 0; i < 4; ++i)
    if (own[i] + pads[i] >= std::min(ks[0], ks[1])) return false;
  return true;
}

void Converter::convert_pad(const onnx::NodeProto& node) {
  const Value& x = computed(node, 0);
  const std::string mode = attr_string(node, "mode", "constant");
  if (mode != "constant") unsupported("mode '" + mode + "' is not supported (only 'constant' with value 0)");
  if (x.shape.size() != 3) unsupported("Pad needs inputs [N, C, H, W], got [N, " + shape_str(x.shape).substr(1));
  if (!has_input(node, 1)) unsupported("the pads input is missing");
  const Constant& given = constant(node, 1);
  if (has_input(node, 2)) {
    const Constant& v = constant(node, 2);
    if (v.numel() != 1 || v.values[0] != 0.0)
      unsupported("constant_value " + (v.numel() == 1 ? std::to_string(v.values[0]) : shape_str(v.shape)) +
                  " is not supported (only 0)");
  }
  std::vector<std::int64_t> axes{0, 1, 2, 3};
  if (has_input(node, 3)) {  // opset 18: the pads cover these axes only
    axes.clear();
    for (double a : constant(node, 3).values) {
      std::int64_t axis = to_int(a, m_label);
      if (axis < 0) axis += 4;
      if (axis < 0 || axis > 3)
        throw IoError(m_label + ": axis " + std::to_string(to_int(a, m_label)) + " of a 4-d input");
      axes.push_back(axis);
    }
  }
  if (given.shape.size() != 1 || given.numel() != 2 * static_cast<std::int64_t>(axes.size()))
    throw IoError(m_label + ": pads of shape " + shape_str(given.shape) + " for " + std::to_string(axes.size()) +
                  " axes (expected 2 per axis)");
  std::vector<std::int64_t> begin(4, 0), end(4, 0), all;
  for (double p : given.values) all.push_back(to_int(p, m_label));
  for (std::size_t i = 0; i < axes.size(); ++i) {
    begin[static_cast<std::size_t>(axes[i])] = all[i];
    end[static_cast<std::size_t>(axes[i])] = all[i + axes.size()];
  }
  if (begin[0] != 0 || begin[1] != 0 || end[0] != 0 || end[1] != 0)
    unsupported("pads " + shape_str(all) + " pad the batch or channel dimension; only H and W are supported");
  const Pads pads{begin[2], begin[3], end[2], end[3]};
  if (*std::min_element(pads.begin(), pads.end()) < 0)
    unsupported("negative pads " + shape_str(all) + " (cropping) are not supported");
  if (*std::max_element(pads.begin(), pads.end()) > kMaxWindow)
    unsupported("pads " + shape_str(all) + " above " + std::to_string(kMaxWindow));
  if (!any(pads)) return define(node.output(0), x);
  const onnx::NodeProto* reader = sole_consumer(node.output(0));
  if (reader && pad_folds_into(*reader, node.output(0), x, pads)) {
    Value folded = x;
    folded.zero_pads = pads;
    return define(node.output(0), std::move(folded));
  }
  define(node.output(0), emit_pad(x, pads, 0.0f));
}

void Converter::convert_pool(const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  const Value& x_in = computed(node, 0, true);
  if (x_in.shape.size() != 3) unsupported("needs inputs [N, C, H, W], got [N, " + shape_str(x_in.shape).substr(1));
  Window win;
  Pool2dOptions opt;
  bool keep_dims = true;
  if (op == "ReduceMean") {
    // The mean over both spatial axes is global average pooling; torch's newer exporter writes it
    // for x.mean((2, 3)). Axes are an input from opset 18, an attribute before.
    std::vector<std::int64_t> axes = attr_ints(node, "axes");
    if (has_input(node, 1))
      for (double a : constant(node, 1).values) axes.push_back(to_int(a, m_label));
    for (auto& a : axes)
      if (a < 0) a += 4;
    std::sort(axes.begin(), axes.end());
    if (axes != std::vector<std::int64_t>{2, 3})
      unsupported("ReduceMean over axes " + shape_str(axes) + " is not supported (only the spatial axes [2, 3])");
    keep_dims = attr_int(node, "keepdims", 1) != 0;
  }
  if (op == "GlobalAveragePool" || op == "ReduceMean") {
    if (x_in.shape[1] != x_in.shape[2])
      unsupported("global pooling of a non-square " + std::to_string(x_in.shape[1]) + "×" +
                  std::to_string(x_in.shape[2]) + " map is not supported");
    win = Window{x_in.shape[1], x_in.shape[1], {}};
  } else {
    if (!find_attribute(node, "kernel_shape")) throw IoError(m_label + ": kernel_shape is missing");
    win = read_window(node, 0);
    opt.ceil_mode = attr_int(node, "ceil_mode", 0) != 0;
    if (op == "MaxPool" && attr_int(node, "storage_order", 0) != 0) unsupported("storage_order = 1 is not supported");
    if (op == "MaxPool" && node.output_size() > 1 && m_consumers.count(node.output(1)))
      unsupported("the Indices output is not supported");
    const bool kernel_pads = win.symmetric() && 2 * win.pads[0] <= win.kernel;  // what the kernels pad
    if (op == "MaxPool" && *std::max_element(win.pads.begin(), win.pads.end()) >= win.kernel)
      unsupported("pads " + pads_str(win.pads) + " reach a whole kernel of " + std::to_string(win.kernel) +
                  ": a window could hold only padding");
    if (opt.ceil_mode && !kernel_pads)
      unsupported("ceil_mode = 1 with pads " + pads_str(win.pads) +
                  " is not supported (only the same padding on all sides, at most half the kernel)");
    if (op == "AveragePool") {
      opt.count_include_pad = attr_int(node, "count_include_pad", 0) != 0;
      if (!opt.count_include_pad && any(win.pads) && !kernel_pads)
        unsupported("count_include_pad = 0 with pads " + pads_str(win.pads) +
                    " is not supported (only the same padding on all sides, at most half the kernel)");
      if (any(x_in.zero_pads)) opt.count_include_pad = true;  // a folded Pad's zeros are elements (pad_folds_into)
    }
  }
  const float fill = op == "MaxPool" ? -std::numeric_limits<float>::infinity() : 0.0f;
  const Value x = padded_input(node, win, fill, win.kernel / 2);
  opt.kernel = win.kernel;
  opt.stride = win.stride;
  opt.padding = win.pads[0];
  if (x.shape[1] + 2 * opt.padding < win.kernel || x.shape[2] + 2 * opt.padding < win.kernel)
    unsupported("the window is larger than the padded input");
  const std::int64_t oh = kernels::pooled_size(x.shape[1], opt.kernel, opt.stride, opt.padding, opt.ceil_mode);
  const std::int64_t ow = kernels::pooled_size(x.shape[2], opt.kernel, opt.stride, opt.padding, opt.ceil_mode);
  GraphStep s;
  s.op = op == "MaxPool" ? GraphOp::MaxPool : GraphOp::AvgPool;
  s.inputs = {x.slot};
  s.pool = opt;
  Value pooled = emit(std::move(s), {x.shape[0], oh, ow});
  pooled.non_negative = x.non_negative;
  if (keep_dims) return define(node.output(0), std::move(pooled));
  GraphStep flat;
  flat.op = GraphOp::Flatten;
  flat.inputs = {pooled.slot};
  define(node.output(0), emit(std::move(flat), {x.shape[0]}));
}

}  // namespace aegis::nn::onnx_import

#endif  // AEGIS_HAS_ONNX
