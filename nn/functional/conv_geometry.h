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

}  // namespace aegis::nn
