// Evaluation at load of the n-d constant operators around torch's F.pad export: its pads, in
// torch's order (last dimension first, begin/end pairs), become ONNX's order through
// ConstantOfShape (zeros for the dimensions not padded), Concat, Reshape to [-1, 2], a Slice with
// step −1 (reversing the rows), Transpose and Reshape to [-1]. Slice follows the ONNX operator's
// rules for negative starts, ends and steps (clamping to [0, d] for a positive step, to
// [−1, d − 1] for a negative one).
#include "core/config.h"
#if AEGIS_HAS_ONNX

#include <algorithm>
#include <cmath>
#include <numeric>

#include "nn/onnx/onnx_values.h"

namespace aegis::nn::onnx_import {

namespace {
// Folded constants are shape plumbing: a few values. Anything larger is refused before it is made.
constexpr std::int64_t kMaxFolded = std::int64_t{1} << 20;

std::vector<std::int64_t> ints(const Constant& c, const std::string& label) {
  std::vector<std::int64_t> v;
  for (double d : c.values) v.push_back(to_int(d, label));
  return v;
}

// Row-major strides of `shape`.
std::vector<std::int64_t> strides_of(const Shape& shape) {
  std::vector<std::int64_t> s(shape.size(), 1);
  for (std::size_t i = shape.size(); i-- > 1;) s[i - 1] = s[i] * shape[i];
  return s;
}
}  // namespace

bool fold_tensor_node(const onnx::NodeProto& node, const std::vector<const Constant*>& in, const std::string& label,
                      const Context& ctx, Constant& r) {
  const std::string& op = node.op_type();
  auto input = [&](std::size_t i) -> const Constant& {
    AEGIS_CHECK_AS(IoError, i < in.size() && in[i] != nullptr, label << ": input " << i << " is missing");
    return *in[i];
  };
  if (op == "ConstantOfShape") {
    const std::vector<std::int64_t> dims = ints(input(0), label);
    std::int64_t n = 1;
    for (auto d : dims) {
      AEGIS_CHECK_AS(IoError, d >= 0, label << ": negative dimension " << d);
      AEGIS_CHECK_AS(Unsupported, d <= kMaxFolded && n * d <= kMaxFolded,
                     label << ": a constant of shape " << shape_str(dims) << " is too large to evaluate at load");
      n *= d;
    }
    Constant fill{{}, {0.0}, false};
    if (const auto* a = find_attribute(node, "value")) fill = read_tensor(a->t(), label + " value", ctx);
    AEGIS_CHECK_AS(IoError, fill.numel() == 1, label << ": value must hold one element");
    r.shape = dims;
    r.integer = fill.integer;
    r.values.assign(static_cast<std::size_t>(n), fill.values[0]);
    return true;
  }
  if (op == "Reshape") {
    const Constant& data = input(0);
    AEGIS_CHECK_AS(Unsupported, attr_int(node, "allowzero", 0) == 0, label << ": allowzero = 1 is not supported");
    Shape target = ints(input(1), label);
    std::int64_t known = 1, infer = -1;
    for (std::size_t i = 0; i < target.size(); ++i) {
      if (target[i] == 0) {
        AEGIS_CHECK_AS(IoError, i < data.shape.size(), label << ": a 0 in the target shape has no dimension to copy");
        target[i] = data.shape[i];
      }
      if (target[i] == -1) {
        AEGIS_CHECK_AS(IoError, infer < 0, label << ": the target shape has two −1 entries");
        infer = static_cast<std::int64_t>(i);
      } else {
        AEGIS_CHECK_AS(IoError, target[i] >= 1 && target[i] <= kMaxFolded,
                       label << ": invalid target dimension " << target[i]);
        known *= target[i];
        AEGIS_CHECK_AS(IoError, known <= kMaxFolded, label << ": the target shape is too large");
      }
    }
    if (infer >= 0) {
      AEGIS_CHECK_AS(IoError, data.numel() % known == 0,
                     label << ": " << data.numel() << " values do not fill " << shape_str(target));
      target[static_cast<std::size_t>(infer)] = data.numel() / known;
      known = data.numel();
    }
    AEGIS_CHECK_AS(IoError, known == data.numel(),
                   label << ": " << data.numel() << " values cannot take the shape " << shape_str(target));
    r = data;
    r.shape = target;
    return true;
  }
  if (op == "Transpose") {
    const Constant& data = input(0);
    const auto rank = static_cast<std::int64_t>(data.shape.size());
    std::vector<std::int64_t> perm(static_cast<std::size_t>(rank));
    std::iota(perm.rbegin(), perm.rend(), 0);  // the default reverses the dimensions
    perm = attr_ints(node, "perm", perm);
    std::vector<std::int64_t> sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    bool valid = static_cast<std::int64_t>(sorted.size()) == rank;
    for (std::int64_t i = 0; valid && i < rank; ++i) valid = sorted[static_cast<std::size_t>(i)] == i;
    AEGIS_CHECK_AS(IoError, valid,
                   label << ": perm " << shape_str(perm) << " is not a permutation of " << rank << " axes");
    r.integer = data.integer;
    for (auto p : perm) r.shape.push_back(data.shape[static_cast<std::size_t>(p)]);
    const std::vector<std::int64_t> in_strides = strides_of(data.shape), out_strides = strides_of(r.shape);
    r.values.resize(data.values.size());
    for (std::int64_t o = 0; o < data.numel(); ++o) {
      std::int64_t at = 0;  // output axis i is input axis perm[i]
      for (std::size_t i = 0; i < perm.size(); ++i)
        at += (o / out_strides[i]) % r.shape[i] * in_strides[static_cast<std::size_t>(perm[i])];
      r.values[static_cast<std::size_t>(o)] = data.values[static_cast<std::size_t>(at)];
    }
    return true;
  }
  if (op == "Slice") {
    const Constant& data = input(0);
    const auto rank = static_cast<std::int64_t>(data.shape.size());
    AEGIS_CHECK_AS(Unsupported, in.size() >= 3, label << ": only Slice with starts/ends inputs is evaluated at load");
    const std::vector<double>& starts = input(1).values;
    const std::vector<double>& ends = input(2).values;
    std::vector<std::int64_t> axes(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
    if (in.size() > 3 && in[3]) axes = ints(*in[3], label);
    std::vector<std::int64_t> steps(starts.size(), 1);
    if (in.size() > 4 && in[4]) steps = ints(*in[4], label);
    AEGIS_CHECK_AS(IoError,
                   ends.size() == starts.size() && axes.size() == starts.size() && steps.size() == starts.size(),
                   label << ": starts, ends, axes and steps differ in length");
    // Per axis: first index, step and count (all of the axis unless sliced).
    std::vector<std::int64_t> first(static_cast<std::size_t>(rank), 0), step(first.size(), 1), count = data.shape;
    for (std::size_t k = 0; k < starts.size(); ++k) {
      std::int64_t a = axes[k] < 0 ? axes[k] + rank : axes[k];
      AEGIS_CHECK_AS(IoError, a >= 0 && a < rank, label << ": axis " << axes[k] << " out of range");
      AEGIS_CHECK_AS(IoError, steps[k] != 0, label << ": step 0");
      const auto ai = static_cast<std::size_t>(a);
      const std::int64_t d = data.shape[ai], s = steps[k];
      auto bound = [&](double v, std::int64_t lo, std::int64_t hi) {
        AEGIS_CHECK_AS(IoError, !std::isnan(v), label << ": a Slice bound is NaN");
        auto i = static_cast<std::int64_t>(std::max(std::min(v, 9.0e18), -9.0e18));
        if (i < 0) i += d;
        return std::max(lo, std::min(i, hi));
      };
      const std::int64_t b = s > 0 ? bound(starts[k], 0, d) : bound(starts[k], 0, d - 1);
      const std::int64_t e = s > 0 ? bound(ends[k], 0, d) : bound(ends[k], -1, d - 1);
      first[ai] = b;
      step[ai] = s;
      count[ai] = d == 0 ? 0 : s > 0 ? (e > b ? (e - b + s - 1) / s : 0) : (b > e ? (b - e - s - 1) / -s : 0);
    }
    r.integer = data.integer;
    r.shape = count;
    const std::vector<std::int64_t> in_strides = strides_of(data.shape), out_strides = strides_of(count);
    std::int64_t n = 1;
    for (auto c : count) n *= c;
    for (std::int64_t o = 0; o < n; ++o) {
      std::int64_t at = 0;
      for (std::size_t i = 0; i < count.size(); ++i)
        at += (first[i] + (o / out_strides[i]) % count[i] * step[i]) * in_strides[i];
      r.values.push_back(data.values[static_cast<std::size_t>(at)]);
    }
    return true;
  }
  return false;
}

}  // namespace aegis::nn::onnx_import

#endif  // AEGIS_HAS_ONNX
