// Poisson sampling, fixed-capacity masked batches and (non-Poisson) shuffled batches
// (privacy/sampling.h).
#include "privacy/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/philox.h"

namespace aegis::privacy {

namespace {

void check_sampling(std::int64_t n, double q) {
  AEGIS_CHECK(n >= 0, "Poisson sampling: dataset size " << n << " must be non-negative");
  AEGIS_CHECK(q > 0.0 && q <= 1.0, "Poisson sampling: sampling rate q = " << q << " must lie in (0, 1]");
}

}  // namespace

std::vector<std::int64_t> poisson_sample(std::int64_t n, double q, std::uint64_t seed, std::uint64_t step) {
  check_sampling(n, q);
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(std::ceil(q * static_cast<double>(n))));
  if (q == 1.0) {
    for (std::int64_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  }
  // q < 1 ⇒ q·2^64 < 2^64: the conversion floors an exact double (scaling by 2^64 is exact).
  const auto threshold = static_cast<std::uint64_t>(std::ldexp(q, 64));
  AEGIS_CHECK(step <= philox::kMaxKeyedStep, "poisson_sample: step " << step << " exceeds " << philox::kMaxKeyedStep);
  const philox::Key key = philox::step_key(seed, philox::kPurposeSampling, step);
  for (std::int64_t i = 0; i < n; ++i) {
    const philox::U32x4 r = philox::block(key, static_cast<std::uint64_t>(i));
    const std::uint64_t u = (static_cast<std::uint64_t>(r.v[1]) << 32) | r.v[0];
    if (u < threshold) out.push_back(i);
  }
  return out;
}

std::vector<std::int64_t> poisson_sample_secure(std::int64_t n, double q, const SecureKey& key, std::uint64_t step) {
  check_sampling(n, q);
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(std::ceil(q * static_cast<double>(n))));
  SecureStream rng(key, philox::kPurposeSampling, step, 0);
  for (std::int64_t i = 0; i < n; ++i)
    if (rng.bernoulli(q)) out.push_back(i);
  return out;
}

PoissonSampler::PoissonSampler(std::int64_t n, double q, std::uint64_t seed, bool secure)
    : m_n(n), m_q(q), m_seed(seed) {
  check_sampling(n, q);
  if (secure) m_key = SecureKey::from_os();
}

std::vector<std::int64_t> PoissonSampler::sample(std::uint64_t step) const {
  return m_key ? poisson_sample_secure(m_n, m_q, *m_key, step) : poisson_sample(m_n, m_q, m_seed, step);
}

std::int64_t PoissonSampler::capacity() const {
  return masked_capacity(m_n, m_q);
}

std::int64_t masked_capacity(std::int64_t n, double q) {
  check_sampling(n, q);
  if (n == 0) return 1;
  const double mean = q * static_cast<double>(n);
  const double sd = std::sqrt(mean * (1.0 - q));
  const auto cap = static_cast<std::int64_t>(std::ceil(mean + 6.0 * sd));
  return cap < 1 ? 1 : (cap > n ? n : cap);
}

MaskedBatch gather_masked(const nn::Dataset& dataset, const std::vector<std::int64_t>& indices, std::int64_t capacity,
                          Device device) {
  AEGIS_CHECK(capacity >= 1, "gather_masked: capacity " << capacity << " must be at least 1");
  const auto k = static_cast<std::int64_t>(indices.size());
  AEGIS_CHECK(k <= capacity, "gather_masked: sample of " << k << " examples exceeds the capacity " << capacity
                                                         << "; split it with split_into_chunks (never resample)");
  const std::int64_t n = dataset.size();
  AEGIS_CHECK(dataset.images.defined() && dataset.images.dim() >= 1 && dataset.images.size(0) == n,
              "gather_masked: dataset '" << dataset.name << "' has inconsistent images and labels");
  check_dtype(dataset.images, DType::F32, "dataset images");
  check_dtype(dataset.labels, DType::I32, "dataset labels");
  const Tensor images = dataset.images.to(Device::cpu());
  const Tensor labels = dataset.labels.to(Device::cpu());

  Shape shape = images.shape();
  shape[0] = capacity;
  MaskedBatch b;
  b.size = k;
  b.images = Tensor::zeros(shape);
  b.labels = Tensor::zeros({capacity}, DType::I32);
  b.mask = Tensor::zeros({capacity});
  const std::int64_t row = n > 0 ? images.numel() / n : 0;
  const float* src = images.data<float>();
  const std::int32_t* src_labels = labels.data<std::int32_t>();
  float* dst = b.images.data<float>();
  std::int32_t* dst_labels = b.labels.data<std::int32_t>();
  float* mask = b.mask.data<float>();
  for (std::int64_t j = 0; j < k; ++j) {
    const std::int64_t i = indices[static_cast<std::size_t>(j)];
    AEGIS_CHECK(i >= 0 && i < n,
                "gather_masked: index " << i << " (position " << j << ") outside the dataset of " << n << " examples");
    std::memcpy(dst + j * row, src + i * row, static_cast<std::size_t>(row) * sizeof(float));
    dst_labels[j] = src_labels[i];
    mask[j] = 1.0f;
  }
  if (!device.is_cpu()) {
    b.images = b.images.to(device);
    b.labels = b.labels.to(device);
    b.mask = b.mask.to(device);
  }
  return b;
}

std::vector<std::vector<std::int64_t>> split_into_chunks(const std::vector<std::int64_t>& indices,
                                                         std::int64_t capacity) {
  AEGIS_CHECK(capacity >= 1, "split_into_chunks: capacity " << capacity << " must be at least 1");
  std::vector<std::vector<std::int64_t>> chunks;
  const auto cap = static_cast<std::size_t>(capacity);
  for (std::size_t begin = 0; begin < indices.size(); begin += cap) {
    const std::size_t end = std::min(indices.size(), begin + cap);
    chunks.emplace_back(indices.begin() + static_cast<std::ptrdiff_t>(begin),
                        indices.begin() + static_cast<std::ptrdiff_t>(end));
  }
  if (chunks.empty()) chunks.emplace_back();
  return chunks;
}

std::vector<std::vector<std::int64_t>> shuffled_batches(std::int64_t n, std::int64_t batch_size, std::uint64_t seed,
                                                        std::uint32_t epoch) {
  AEGIS_CHECK(batch_size >= 1 && batch_size <= n,
              "shuffled_batches: batch size " << batch_size << " must lie in [1, " << n << "]");
  const std::vector<std::int64_t> order = nn::shuffled_order(n, seed, epoch);
  std::vector<std::vector<std::int64_t>> batches;
  const auto b = static_cast<std::size_t>(batch_size);
  for (std::size_t begin = 0; begin + b <= order.size(); begin += b)
    batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(begin),
                         order.begin() + static_cast<std::ptrdiff_t>(begin + b));
  return batches;
}

}  // namespace aegis::privacy
