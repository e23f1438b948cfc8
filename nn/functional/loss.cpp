// Softmax cross-entropy (fused, numerically stable) and the accuracy helpers argmax and
// count_correct. Backward recomputes the softmax from the logits: dz_i = (softmax(z_i) −
// onehot(y_i))·g_i, with g_i = g/N for Mean, g for Sum and g_i for None — nothing but the
// logits and labels is saved. Labels on the CPU are range-checked before any kernel runs. Labels
// on the GPU are not copied back for that (it would synchronize every attack iteration and
// training step): the CUDA kernels check each label themselves and give a NaN loss and gradient
// for a row whose label is outside [0, K), which the optimizer's and the attacks' non-finite
// checks then refuse; the entry points that take labels from users (datasets, attacks) validate
// them once on the host. count_correct does not range-check: a label outside [0, K) simply never
// equals an argmax and counts as wrong.
#include "kernels/loss.h"

#include <limits>

#include "nn/functional.h"
#include "runtime/dispatch.h"

namespace aegis::nn {

namespace {
// Shapes and dtype common to the three ops: f32 [N, K] with K ≥ 1.
void check_logits(const Tensor& logits, const char* what) {
  check_dim(logits, 2, what);
  check_dtype(logits, DType::F32, what);
  AEGIS_CHECK_AS(ShapeError, logits.size(1) >= 1, what << ": need at least one class, got " << logits.describe());
}

void check_labels(const Tensor& labels, const Tensor& logits, std::int64_t n, const char* what) {
  check_dtype(labels, DType::I32, what);
  check_shape(labels, {n}, what);
  check_same_device(logits, labels, what);
}

// InvalidArgument naming the first label outside [0, k) and its position.
void check_label_range(const Tensor& labels, std::int64_t k, const char* op) {
  const Tensor host = labels.to(Device::cpu());
  const std::int32_t* y = host.data<std::int32_t>();
  for (std::int64_t i = 0; i < host.numel(); ++i)
    AEGIS_CHECK(y[i] >= 0 && y[i] < k, op << ": label " << y[i] << " at index " << i << " is outside [0, " << k
                                          << ") for logits with " << k << " classes");
}
}  // namespace

namespace F {

Var cross_entropy(const Var& logits, const Tensor& labels, Reduction reduction) {
  const Tensor& zv = logits.value();
  check_logits(zv, "cross_entropy logits");
  const std::int64_t n = zv.size(0), k = zv.size(1);
  check_labels(labels, zv, n, "cross_entropy labels");
  AEGIS_CHECK(reduction != Reduction::Mean || n > 0,
              "cross_entropy: the mean over an empty batch is undefined (logits " << zv.describe() << ")");
  if (!labels.is_cuda()) check_label_range(labels, k, "cross_entropy");

  const Device dev = zv.device();
  const float scale = reduction == Reduction::Mean ? 1.0f / static_cast<float>(n) : 1.0f;
  Tensor losses = Tensor::empty({n}, DType::F32, dev);
  Tensor total = reduction == Reduction::None ? Tensor() : Tensor::empty({1}, DType::F32, dev);
  AEGIS_DISPATCH(dev, cross_entropy_forward(zv.data<float>(), labels.data<std::int32_t>(), losses.data<float>(),
                                            total.defined() ? total.data<float>() : nullptr, scale, n, k));
  Tensor out = reduction == Reduction::None ? losses : total;

  return autograd::make_result(
      std::move(out), {logits}, "cross_entropy", [logits, labels, reduction, scale, n, k](const Tensor& gy) {
        const Tensor& z = logits.value();
        Tensor dz = Tensor::empty({n, k}, DType::F32, z.device());
        AEGIS_DISPATCH(z.device(),
                       cross_entropy_backward(z.data<float>(), labels.data<std::int32_t>(), gy.data<float>(),
                                              reduction == Reduction::None, scale, dz.data<float>(), n, k));
        logits.accumulate_grad_owned(std::move(dz));
      });
}

}  // namespace F

Tensor argmax(const Tensor& logits) {
  check_logits(logits, "argmax logits");
  const std::int64_t n = logits.size(0), k = logits.size(1);
  Tensor out = Tensor::empty({n}, DType::I32, logits.device());
  AEGIS_DISPATCH(logits.device(), argmax_rows(logits.data<float>(), out.data<std::int32_t>(), n, k));
  return out;
}

Tensor count_correct_on_device(const Tensor& logits, const Tensor& labels) {
  check_logits(logits, "count_correct logits");
  const std::int64_t n = logits.size(0), k = logits.size(1);
  check_labels(labels, logits, n, "count_correct labels");
  AEGIS_CHECK_AS(ShapeError, n <= std::numeric_limits<std::int32_t>::max(),
                 "count_correct: " << n << " rows exceed the int32 counter; split the batch");
  Tensor count = Tensor::empty({1}, DType::I32, logits.device());
  AEGIS_DISPATCH(logits.device(),
                 count_correct(logits.data<float>(), labels.data<std::int32_t>(), count.data<std::int32_t>(), n, k));
  return count;
}

std::int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  return static_cast<std::int64_t>(count_correct_on_device(logits, labels).item());
}

}  // namespace aegis::nn
