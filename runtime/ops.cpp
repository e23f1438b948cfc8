#include "runtime/ops.h"

#include "kernels/blas.h"
#include "kernels/elementwise.h"
#include "kernels/random.h"
#include "runtime/dispatch.h"

namespace aegis::ops {

namespace {
void check_same(const Tensor& a, const Tensor& b, const char* what) {
  check_dtype(a, DType::F32, what);
  check_shape(b, a.shape(), what);
  check_dtype(b, DType::F32, what);
  check_same_device(a, b, what);
}
}  // namespace

void add_inplace(Tensor& y, const Tensor& x) {
  check_same(y, x, "add_inplace");
  AEGIS_DISPATCH(y.device(), axpy(1.0f, x.data<float>(), y.data<float>(), y.numel()));
}

void axpy(float alpha, const Tensor& x, Tensor& y) {
  check_same(y, x, "axpy");
  AEGIS_DISPATCH(y.device(), axpy(alpha, x.data<float>(), y.data<float>(), y.numel()));
}

void scale_inplace(Tensor& x, float alpha) {
  check_dtype(x, DType::F32, "scale_inplace");
  AEGIS_DISPATCH(x.device(), scale(alpha, x.data<float>(), x.numel()));
}

Tensor add(const Tensor& a, const Tensor& b) {
  check_same(a, b, "add");
  Tensor out = Tensor::empty_like(a);
  AEGIS_DISPATCH(a.device(), add(a.data<float>(), b.data<float>(), out.data<float>(), a.numel()));
  return out;
}

std::int64_t count_nonfinite(const Tensor& x) {
  check_dtype(x, DType::F32, "count_nonfinite");
  return AEGIS_DISPATCH(x.device(), count_nonfinite(x.data<float>(), x.numel()));
}

std::vector<std::int64_t> count_nonfinite_each(const std::vector<const Tensor*>& xs) {
  if (xs.empty()) return {};
  const Device dev = xs.front()->device();
  Tensor counts = Tensor::zeros({static_cast<std::int64_t>(xs.size())}, DType::I64, dev);
  std::int64_t* d_counts = counts.data<std::int64_t>();
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = *xs[i];
    check_dtype(x, DType::F32, "count_nonfinite_each");
    AEGIS_CHECK_AS(ShapeError, x.device() == dev,
                   "count_nonfinite_each: " << x.describe() << " is not on " << dev.str());
    AEGIS_DISPATCH(dev, count_nonfinite_into(x.data<float>(), x.numel(), d_counts + i));
  }
  return counts.to_vector<std::int64_t>();
}

void check_finite(const Tensor& x, const char* what) {
  const std::int64_t bad = count_nonfinite(x);
  if (bad) AEGIS_THROW(NumericError, what << " contains " << bad << " NaN/Inf value(s) out of " << x.numel());
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_dim(a, 2, "matmul A");
  check_dim(b, 2, "matmul B");
  check_dtype(a, DType::F32, "matmul A");
  check_dtype(b, DType::F32, "matmul B");
  check_same_device(a, b, "matmul");
  kernels::GemmArgs g;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.m = trans_a ? a.size(1) : a.size(0);
  g.k = trans_a ? a.size(0) : a.size(1);
  const std::int64_t kb = trans_b ? b.size(1) : b.size(0);
  g.n = trans_b ? b.size(0) : b.size(1);
  AEGIS_CHECK_AS(ShapeError, g.k == kb, "matmul: inner dimensions differ (" << a.describe() << " · " << b.describe() << ")");
  Tensor c = Tensor::empty({g.m, g.n}, DType::F32, a.device());
  AEGIS_DISPATCH(a.device(), gemm(g, a.data<float>(), b.data<float>(), c.data<float>()));
  return c;
}

void fill_uniform(Tensor& t, const philox::Key& key, float lo, float hi, std::uint64_t offset) {
  check_dtype(t, DType::F32, "fill_uniform");
  AEGIS_DISPATCH(t.device(), fill_uniform(t.data<float>(), t.numel(), key, offset, lo, hi));
}

void fill_normal(Tensor& t, const philox::Key& key, float mean, float std, std::uint64_t offset) {
  check_dtype(t, DType::F32, "fill_normal");
  AEGIS_DISPATCH(t.device(), fill_normal(t.data<float>(), t.numel(), key, offset, mean, std));
}

double sum(const Tensor& x) {
  double s = 0.0;
  if (x.dtype() == DType::F32) {
    for (float v : x.to_vector<float>()) s += v;
  } else if (x.dtype() == DType::F64) {
    for (double v : x.to_vector<double>()) s += v;
  } else {
    for (auto v : x.to_vector<std::int32_t>()) s += v;
  }
  return s;
}

}  // namespace aegis::ops
