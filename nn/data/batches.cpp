// Minibatch iteration: the epoch's order (identity, or a Philox-keyed Fisher–Yates permutation),
// then for each batch a gather of its rows into fresh host tensors and one copy to the device.
#include <algorithm>
#include <cstring>
#include <utility>

#include "nn/data/dataset.h"
#include "core/checked_math.h"
#include "core/philox.h"

namespace aegis::nn {

std::vector<std::int64_t> shuffled_order(std::int64_t n, std::uint64_t seed, std::uint32_t epoch) {
  AEGIS_CHECK(n >= 0, "shuffled_order: n = " << n << " must be non-negative");
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  // Fisher–Yates (Knuth, TAOCP vol. 2, §3.4.2, Algorithm P): swap position i with a uniform
  // j ∈ [0, i], for i = n−1 down to 1. Swap number s draws 64 bits from Philox elements 2s and
  // 2s+1; reducing them mod (i+1) biases j by at most (i+1)/2^64, far below anything measurable.
  const philox::Key key{seed, philox::kPurposeShuffle, epoch};
  std::uint64_t s = 0;
  for (std::int64_t i = n - 1; i > 0; --i, ++s) {
    const std::uint64_t r = (std::uint64_t{philox::bits(key, 2 * s)} << 32) | philox::bits(key, 2 * s + 1);
    const auto j = static_cast<std::int64_t>(r % static_cast<std::uint64_t>(i + 1));
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

BatchIterator::BatchIterator(const Dataset& dataset, const BatchOptions& options, std::uint32_t epoch)
    : m_dataset(dataset), m_options(options) {
  AEGIS_CHECK(options.batch_size > 0, "batch size " << options.batch_size << " must be positive");
  AEGIS_CHECK(dataset.images.defined() && dataset.labels.defined(),
              "BatchIterator over dataset '" << dataset.name << "' without images or labels");
  check_dtype(dataset.images, DType::F32, "BatchIterator images");
  check_dtype(dataset.labels, DType::I32, "BatchIterator labels");
  check_dim(dataset.labels, 1, "BatchIterator labels");
  AEGIS_CHECK_AS(ShapeError, dataset.images.dim() >= 1 && dataset.images.size(0) == dataset.labels.size(0),
                 "BatchIterator: images " << dataset.images.describe() << " and labels " << dataset.labels.describe()
                                          << " disagree on the number of examples");
  AEGIS_CHECK_AS(
      ShapeError, dataset.images.device().is_cpu() && dataset.labels.device().is_cpu(),
      "BatchIterator: dataset '" << dataset.name << "' must live on the CPU, images are " << dataset.images.describe());
  start_epoch(epoch);
}

void BatchIterator::start_epoch(std::uint32_t epoch) {
  m_epoch = epoch;
  m_position = 0;
  const std::int64_t n = m_dataset.size();
  if (m_options.shuffle) {
    m_order = shuffled_order(n, m_options.seed, epoch);
  } else {
    m_order.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) m_order[static_cast<std::size_t>(i)] = i;
  }
}

std::int64_t BatchIterator::num_batches() const {
  const std::int64_t n = m_dataset.size(), b = m_options.batch_size;
  return m_options.drop_last ? n / b : ceil_div(n, b);
}

bool BatchIterator::next(Batch& out) {
  const std::int64_t n = m_dataset.size();
  const std::int64_t remaining = n - m_position;
  const std::int64_t b = std::min(m_options.batch_size, remaining);
  if (b <= 0 || (m_options.drop_last && b < m_options.batch_size)) return false;

  Shape image_shape = m_dataset.images.shape();
  image_shape[0] = b;
  Tensor images = Tensor::empty(image_shape, DType::F32);
  Tensor labels = Tensor::empty({b}, DType::I32);
  const std::int64_t row = n == 0 ? 0 : m_dataset.images.numel() / n;
  const float* src_images = m_dataset.images.data<float>();
  const std::int32_t* src_labels = m_dataset.labels.data<std::int32_t>();
  float* dst_images = images.data<float>();
  std::int32_t* dst_labels = labels.data<std::int32_t>();
  for (std::int64_t k = 0; k < b; ++k) {
    const std::int64_t e = m_order[static_cast<std::size_t>(m_position + k)];
    std::memcpy(dst_images + k * row, src_images + e * row, static_cast<std::size_t>(row) * sizeof(float));
    dst_labels[k] = src_labels[e];
  }
  m_position += b;
  out.images = images.to(m_options.device);
  out.labels = labels.to(m_options.device);
  return true;
}

}  // namespace aegis::nn
