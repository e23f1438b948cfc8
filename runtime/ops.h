// Tensor-level helpers over the elementwise, BLAS and random kernels, dispatched by device.
// They validate shapes, dtypes and devices and throw ShapeError naming the operation.
#pragma once

#include <cstdint>
#include <vector>

#include "core/philox.h"
#include "runtime/tensor.h"

namespace aegis::ops {

void add_inplace(Tensor& y, const Tensor& x);              // y += x
void axpy(float alpha, const Tensor& x, Tensor& y);        // y += alpha x
void scale_inplace(Tensor& x, float alpha);                // x *= alpha
Tensor add(const Tensor& a, const Tensor& b);              // a + b, same shapes
std::int64_t count_nonfinite(const Tensor& x);
// The non-finite count of each tensor (all f32, all on one device), with one copy back to the host
// in all: the counts accumulate in an int64 tensor on the device.
std::vector<std::int64_t> count_nonfinite_each(const std::vector<const Tensor*>& xs);
// Throws NumericError "<what> contains N NaN/Inf values" when x is not all finite.
void check_finite(const Tensor& x, const char* what);
// C = op(A)·op(B) for 2-d float tensors.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
void fill_uniform(Tensor& t, const philox::Key& key, float lo, float hi, std::uint64_t offset = 0);
void fill_normal(Tensor& t, const philox::Key& key, float mean, float std, std::uint64_t offset = 0);
// Σ of all elements, accumulated in double (for tests, losses and diagnostics).
double sum(const Tensor& x);

}  // namespace aegis::ops
