// Internal to nn/ and privacy/: the kernels' Conv2dGeometry of a convolution of x [N,C,H,W] by
// w [O,C,kh,kw] with the given stride, padding and dilation (no validation; F::conv2d validates).
#pragma once

#include "kernels/conv.h"
#include "nn/functional.h"

namespace aegis::nn {

inline kernels::Conv2dGeometry conv2d_geometry(const Tensor& x, const Tensor& w, const Conv2dOptions& opt) {
  kernels::Conv2dGeometry g;
  g.batch = x.size(0);
  g.in_channels = x.size(1);
  g.height = x.size(2);
  g.width = x.size(3);
  g.out_channels = w.size(0);
  g.kernel_h = w.size(2);
  g.kernel_w = w.size(3);
  g.stride = opt.stride;
  g.padding = opt.padding;
  g.dilation = opt.dilation;
  return g;
}

// The checks of F::conv2d (groups = 1) and F::grouped_conv2d: x [N,C,H,W] and w [O, C/groups, kh, kw]
// float32 on one device, bias [O] or undefined, positive stride and dilation (grouped: dilation 1,
// its kernel has none), non-negative padding, a kernel that fits the padded input. Returns the
// geometry; ShapeError / InvalidArgument naming `op`.
kernels::Conv2dGeometry checked_conv2d_geometry(const Tensor& x, const Tensor& w, const autograd::Var& b,
                                                const Conv2dOptions& opt, std::int64_t groups, const char* op);

}  // namespace aegis::nn
