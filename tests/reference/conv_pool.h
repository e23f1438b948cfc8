// Naive double-precision references for conv2d, max_pool2d and avg_pool2d (NCHW, PyTorch's
// semantics): the defining sums written out as nested loops, nothing reused from the kernels.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace aegis::reference {

struct ConvDims {
  std::int64_t n, c, h, w;  // input
  std::int64_t o, kh, kw;   // filters
  std::int64_t stride, pad;
  std::int64_t oh() const { return (h + 2 * pad - kh) / stride + 1; }
  std::int64_t ow() const { return (w + 2 * pad - kw) / stride + 1; }
};

// y[n,o,i,j] = b[o] + Σ_{c,a,e} w[o,c,a,e] · x[n, c, i·s − p + a, j·s − p + e] (0 outside the image).
// `b` may be empty (no bias).
inline std::vector<double> conv2d_forward(const ConvDims& d, const std::vector<double>& x, const std::vector<double>& w,
                                          const std::vector<double>& b) {
  const std::int64_t oh = d.oh(), ow = d.ow();
  std::vector<double> y(static_cast<std::size_t>(d.n * d.o * oh * ow));
  for (std::int64_t n = 0; n < d.n; ++n)
    for (std::int64_t o = 0; o < d.o; ++o)
      for (std::int64_t i = 0; i < oh; ++i)
        for (std::int64_t j = 0; j < ow; ++j) {
          double acc = b.empty() ? 0.0 : b[static_cast<std::size_t>(o)];
          for (std::int64_t c = 0; c < d.c; ++c)
            for (std::int64_t a = 0; a < d.kh; ++a)
              for (std::int64_t e = 0; e < d.kw; ++e) {
                const std::int64_t r = i * d.stride - d.pad + a, q = j * d.stride - d.pad + e;
                if (r < 0 || r >= d.h || q < 0 || q >= d.w) continue;
                acc += w[static_cast<std::size_t>(((o * d.c + c) * d.kh + a) * d.kw + e)] *
                       x[static_cast<std::size_t>(((n * d.c + c) * d.h + r) * d.w + q)];
              }
          y[static_cast<std::size_t>(((n * d.o + o) * oh + i) * ow + j)] = acc;
        }
  return y;
}

struct ConvGrads {
  std::vector<double> dx, dw, db;
};

// The same sum differentiated term by term: every product w·x in y[n,o,i,j] sends gy[n,o,i,j]·w to
// dx and gy[n,o,i,j]·x to dw; db[o] sums gy over n, i, j.
inline ConvGrads conv2d_backward(const ConvDims& d, const std::vector<double>& x, const std::vector<double>& w,
                                 const std::vector<double>& gy) {
  const std::int64_t oh = d.oh(), ow = d.ow();
  ConvGrads g{std::vector<double>(x.size()), std::vector<double>(w.size()),
              std::vector<double>(static_cast<std::size_t>(d.o))};
  for (std::int64_t n = 0; n < d.n; ++n)
    for (std::int64_t o = 0; o < d.o; ++o)
      for (std::int64_t i = 0; i < oh; ++i)
        for (std::int64_t j = 0; j < ow; ++j) {
          const double gv = gy[static_cast<std::size_t>(((n * d.o + o) * oh + i) * ow + j)];
          g.db[static_cast<std::size_t>(o)] += gv;
          for (std::int64_t c = 0; c < d.c; ++c)
            for (std::int64_t a = 0; a < d.kh; ++a)
              for (std::int64_t e = 0; e < d.kw; ++e) {
                const std::int64_t r = i * d.stride - d.pad + a, q = j * d.stride - d.pad + e;
                if (r < 0 || r >= d.h || q < 0 || q >= d.w) continue;
                const auto wi = static_cast<std::size_t>(((o * d.c + c) * d.kh + a) * d.kw + e);
                const auto xi = static_cast<std::size_t>(((n * d.c + c) * d.h + r) * d.w + q);
                g.dx[xi] += gv * w[wi];
                g.dw[wi] += gv * x[xi];
              }
        }
  return g;
}

struct PoolDims {
  std::int64_t n, c, h, w;
  std::int64_t k, stride, pad;
  std::int64_t oh() const { return (h + 2 * pad - k) / stride + 1; }
  std::int64_t ow() const { return (w + 2 * pad - k) / stride + 1; }
};

struct MaxPoolResult {
  std::vector<double> y;
  std::vector<std::size_t> argmax;  // flat index into x of each output's maximum
};

// Window elements outside the image are −∞; the first maximum in row-major window order wins.
inline MaxPoolResult max_pool2d_forward(const PoolDims& d, const std::vector<double>& x) {
  const std::int64_t oh = d.oh(), ow = d.ow();
  MaxPoolResult out;
  for (std::int64_t n = 0; n < d.n; ++n)
    for (std::int64_t c = 0; c < d.c; ++c)
      for (std::int64_t i = 0; i < oh; ++i)
        for (std::int64_t j = 0; j < ow; ++j) {
          double best = -std::numeric_limits<double>::infinity();
          std::size_t at = 0;
          bool found = false;
          for (std::int64_t a = 0; a < d.k; ++a)
            for (std::int64_t e = 0; e < d.k; ++e) {
              const std::int64_t r = i * d.stride - d.pad + a, q = j * d.stride - d.pad + e;
              if (r < 0 || r >= d.h || q < 0 || q >= d.w) continue;
              const auto xi = static_cast<std::size_t>(((n * d.c + c) * d.h + r) * d.w + q);
              if (!found || x[xi] > best) {
                best = x[xi];
                at = xi;
                found = true;
              }
            }
          out.y.push_back(best);
          out.argmax.push_back(at);
        }
  return out;
}

inline std::vector<double> max_pool2d_backward(const std::vector<std::size_t>& argmax, const std::vector<double>& gy,
                                               std::size_t x_size) {
  std::vector<double> dx(x_size);
  for (std::size_t i = 0; i < gy.size(); ++i) dx[argmax[i]] += gy[i];
  return dx;
}

// Mean over the full k×k window, padded positions counted as zeros (count_include_pad = True).
inline std::vector<double> avg_pool2d_forward(const PoolDims& d, const std::vector<double>& x) {
  const std::int64_t oh = d.oh(), ow = d.ow();
  std::vector<double> y;
  for (std::int64_t n = 0; n < d.n; ++n)
    for (std::int64_t c = 0; c < d.c; ++c)
      for (std::int64_t i = 0; i < oh; ++i)
        for (std::int64_t j = 0; j < ow; ++j) {
          double acc = 0.0;
          for (std::int64_t a = 0; a < d.k; ++a)
            for (std::int64_t e = 0; e < d.k; ++e) {
              const std::int64_t r = i * d.stride - d.pad + a, q = j * d.stride - d.pad + e;
              if (r < 0 || r >= d.h || q < 0 || q >= d.w) continue;
              acc += x[static_cast<std::size_t>(((n * d.c + c) * d.h + r) * d.w + q)];
            }
          y.push_back(acc / static_cast<double>(d.k * d.k));
        }
  return y;
}

inline std::vector<double> avg_pool2d_backward(const PoolDims& d, const std::vector<double>& gy) {
  const std::int64_t oh = d.oh(), ow = d.ow();
  std::vector<double> dx(static_cast<std::size_t>(d.n * d.c * d.h * d.w));
  for (std::int64_t n = 0; n < d.n; ++n)
    for (std::int64_t c = 0; c < d.c; ++c)
      for (std::int64_t i = 0; i < oh; ++i)
        for (std::int64_t j = 0; j < ow; ++j) {
          const double share =
              gy[static_cast<std::size_t>(((n * d.c + c) * oh + i) * ow + j)] / static_cast<double>(d.k * d.k);
          for (std::int64_t a = 0; a < d.k; ++a)
            for (std::int64_t e = 0; e < d.k; ++e) {
              const std::int64_t r = i * d.stride - d.pad + a, q = j * d.stride - d.pad + e;
              if (r < 0 || r >= d.h || q < 0 || q >= d.w) continue;
              dx[static_cast<std::size_t>(((n * d.c + c) * d.h + r) * d.w + q)] += share;
            }
        }
  return dx;
}

}  // namespace aegis::reference
