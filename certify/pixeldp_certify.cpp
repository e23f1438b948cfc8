// Certified prediction with PixelDP (Lecuyer et al. 2019, §III-C): Monte Carlo estimates of the
// expected scores, their confidence bounds, the robustness size; and the expected-scores model
// that attacks differentiate through (§IV).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "certify/pixeldp.h"
#include "core/checked_math.h"
#include "runtime/ops.h"

namespace aegis::certify {

using nn::Var;

namespace {
void check_images(const Tensor& x, const Shape& input_shape, const char* what) {
  check_dtype(x, DType::F32, what);
  Shape expected{x.dim() > 0 ? x.size(0) : 0};
  expected.insert(expected.end(), input_shape.begin(), input_shape.end());
  AEGIS_CHECK_AS(ShapeError, x.shape() == expected && expected[0] >= 1,
                 what << " must be [m ≥ 1, " << input_shape[0] << ", " << input_shape[1] << ", " << input_shape[2]
                      << "], got " << x.describe());
  ops::check_finite(x, what);
}

// Numerically stable softmax of one row of K logits, in double.
void softmax_row(const float* z, std::int64_t k, double* p) {
  double top = z[0];
  for (std::int64_t c = 1; c < k; ++c) top = std::max(top, static_cast<double>(z[c]));
  double total = 0.0;
  for (std::int64_t c = 0; c < k; ++c) total += (p[c] = std::exp(static_cast<double>(z[c]) - top));
  for (std::int64_t c = 0; c < k; ++c) p[c] /= total;
}
}  // namespace

ScoreSums sample_scores(PixelDpNet& net, const Tensor& x, std::uint64_t first_id, std::int64_t draws,
                        std::uint32_t phase, std::int64_t batch, Device device) {
  AEGIS_CHECK(draws >= 1, "number of noise draws " << draws << " must be at least 1");
  AEGIS_CHECK(batch >= 1, "batch " << batch << " must be at least 1");
  AEGIS_CHECK(phase < NoiseLayer::kFixedStepBase, "phase " << phase << " must be below " << NoiseLayer::kFixedStepBase);
  check_images(x, net.input_shape(), "PixelDP input x");
  nn::FrozenScope frozen(net);
  const std::int64_t m = x.size(0), d = x.numel() / m, total = checked_mul(m, draws, "inputs × noise draws");
  const std::vector<float> host = x.to(Device::cpu()).to_vector<float>();
  ScoreSums out;
  out.draws = draws;
  std::vector<float> rows;
  std::vector<double> p;
  for (std::int64_t f0 = 0; f0 < total; f0 += batch) {
    const std::int64_t b = std::min(batch, total - f0);
    rows.resize(static_cast<std::size_t>(b * d));
    for (std::int64_t r = 0; r < b; ++r)
      std::memcpy(rows.data() + r * d, host.data() + (f0 + r) / draws * d, static_cast<std::size_t>(d) * sizeof(float));
    Shape shape = x.shape();
    shape[0] = b;
    // Row r of this batch is draw (f0 + r) mod n of input (f0 + r) / n: global row id·n + s.
    net.noise_layer().set_next_draw(NoiseLayer::kFixedStepBase + phase,
                                    first_id * static_cast<std::uint64_t>(draws) + static_cast<std::uint64_t>(f0));
    const Tensor logits =
        net.forward(Var(Tensor::from_vector(rows, shape).to(device), false)).value().to(Device::cpu());
    AEGIS_CHECK_AS(ShapeError, logits.dim() == 2 && logits.size(0) == b && logits.size(1) >= 2,
                   "PixelDP: the network must give logits [" << b << ", K ≥ 2], got " << logits.describe());
    const std::int64_t k = logits.size(1);
    if (out.num_classes == 0) {
      out.num_classes = k;
      out.sum.assign(static_cast<std::size_t>(m * k), 0.0);
      out.sum_sq.assign(static_cast<std::size_t>(m * k), 0.0);
      p.resize(static_cast<std::size_t>(k));
    }
    ops::check_finite(logits, "PixelDP logits");
    const float* z = logits.data<float>();
    for (std::int64_t r = 0; r < b; ++r) {
      softmax_row(z + r * k, k, p.data());
      const std::int64_t i = (f0 + r) / draws;
      for (std::int64_t c = 0; c < k; ++c) {
        out.sum[static_cast<std::size_t>(i * k + c)] += p[static_cast<std::size_t>(c)];
        out.sum_sq[static_cast<std::size_t>(i * k + c)] +=
            p[static_cast<std::size_t>(c)] * p[static_cast<std::size_t>(c)];
      }
    }
  }
  return out;
}

std::vector<PixelDpCertificate> certify_pixeldp(PixelDpNet& net, const PixelDpMechanism& mechanism, const Tensor& x,
                                                std::uint64_t first_id, const PixelDpCertifyOptions& options,
                                                Device device) {
  check_mechanism(mechanism);
  AEGIS_CHECK(mechanism.norm == net.norm(), "PixelDP mechanism for " << pixeldp_norm_name(mechanism.norm)
                                                                     << " does not match a network built for "
                                                                     << pixeldp_norm_name(net.norm()));
  AEGIS_CHECK(std::isfinite(options.confidence) && options.confidence > 0.0 && options.confidence < 1.0,
              "confidence " << options.confidence << " must be in (0, 1)");
  AEGIS_CHECK(options.bound != BoundKind::Bernstein || options.draws >= 2,
              "the empirical Bernstein bound needs at least 2 draws, got " << options.draws);
  const ScoreSums sums = sample_scores(net, x, first_id, options.draws, options.phase, options.batch, device);
  const std::int64_t m = x.size(0), k = sums.num_classes;
  std::vector<PixelDpCertificate> out(static_cast<std::size_t>(m));
  for (std::int64_t i = 0; i < m; ++i) {
    const auto begin = static_cast<std::ptrdiff_t>(i * k), end = static_cast<std::ptrdiff_t>((i + 1) * k);
    PixelDpCertificate& c = out[static_cast<std::size_t>(i)];
    c.scores = estimate_scores(std::vector<double>(sums.sum.begin() + begin, sums.sum.begin() + end),
                               std::vector<double>(sums.sum_sq.begin() + begin, sums.sum_sq.begin() + end),
                               options.draws, options.confidence, options.bound);
    c.prediction = c.scores.prediction;
    double upper_other = 0.0;
    for (std::int64_t j = 0; j < k; ++j) {
      // Not std::max, which drops a NaN: max_robust_epsilon must see it and refuse it.
      const double u = c.scores.upper[static_cast<std::size_t>(j)];
      if (j != c.prediction && !(u <= upper_other)) upper_other = u;
    }
    c.epsilon = max_robust_epsilon(c.scores.lower[static_cast<std::size_t>(c.prediction)], upper_other,
                                   mechanism.effective_delta(), mechanism.max_epsilon());
    c.robustness_size = c.epsilon > 0.0 ? mechanism.size_at(c.epsilon) : 0.0;
  }
  return out;
}

// ---- the expected-scores model --------------------------------------------------------------------

namespace {
// [m, ...] → [m·D, ...], row i·D + s = row i; the gradient sums the D copies.
Var repeat_rows(const Var& x, std::int64_t draws) {
  const Tensor& xv = x.value();
  const std::int64_t m = xv.size(0), d = xv.numel() / m;
  const Device device = xv.device();
  const std::vector<float> host = xv.to(Device::cpu()).to_vector<float>();
  checked_mul(checked_mul(m, draws, "inputs × noise draws"), d, "inputs × noise draws × input size");
  std::vector<float> out(static_cast<std::size_t>(m * draws * d));
  for (std::int64_t r = 0; r < m * draws; ++r)
    std::memcpy(out.data() + r * d, host.data() + r / draws * d, static_cast<std::size_t>(d) * sizeof(float));
  Shape shape = xv.shape();
  shape[0] = m * draws;
  const Shape in_shape = xv.shape();
  return autograd::make_result(Tensor::from_vector(out, shape).to(device), {x}, "repeat_rows",
                               [x, draws, m, d, in_shape, device](const Tensor& g) {
                                 const std::vector<float> gh = g.to(Device::cpu()).to_vector<float>();
                                 std::vector<float> dx(static_cast<std::size_t>(m * d), 0.0f);
                                 for (std::int64_t r = 0; r < m * draws; ++r)
                                   for (std::int64_t j = 0; j < d; ++j)
                                     dx[static_cast<std::size_t>(r / draws * d + j)] +=
                                         gh[static_cast<std::size_t>(r * d + j)];
                                 x.accumulate_grad_owned(Tensor::from_vector(dx, in_shape).to(device));
                               });
}

// z [m·D, K] → log P [m, K], P_i = (1/D)·Σ_s softmax(z_{iD+s}). With p_s = softmax(z_s) and the
// incoming gradient g: ∂/∂z_{s,c} Σ_k g_k log P_k = (1/D)·p_{s,c}·(g_c/P_c − Σ_k g_k·p_{s,k}/P_k).
Var log_mean_softmax(const Var& z, std::int64_t draws) {
  const Tensor& zv = z.value();
  AEGIS_CHECK_AS(ShapeError, zv.dim() == 2 && zv.size(0) % draws == 0 && zv.size(1) >= 2,
                 "expected scores: logits must be [m·" << draws << ", K ≥ 2], got " << zv.describe());
  const std::int64_t rows = zv.size(0), m = rows / draws, k = zv.size(1);
  const Device device = zv.device();
  const Tensor zh = zv.to(Device::cpu());
  ops::check_finite(zh, "PixelDP logits");
  std::vector<double> p(static_cast<std::size_t>(rows * k)), mean(static_cast<std::size_t>(m * k), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    softmax_row(zh.data<float>() + r * k, k, p.data() + r * k);
    for (std::int64_t c = 0; c < k; ++c)
      mean[static_cast<std::size_t>(r / draws * k + c)] +=
          p[static_cast<std::size_t>(r * k + c)] / static_cast<double>(draws);
  }
  std::vector<float> out(mean.size());
  for (std::size_t i = 0; i < mean.size(); ++i) {
    mean[i] = std::max(mean[i], 1e-300);  // a mean of softmax values is positive; guard underflow
    out[i] = static_cast<float>(std::log(mean[i]));
  }
  return autograd::make_result(
      Tensor::from_vector(out, {m, k}).to(device), {z}, "log_mean_softmax",
      [z, p = std::move(p), mean = std::move(mean), draws, rows, k, device](const Tensor& g) {
        const std::vector<float> gh = g.to(Device::cpu()).to_vector<float>();
        std::vector<float> dz(static_cast<std::size_t>(rows * k));
        for (std::int64_t r = 0; r < rows; ++r) {
          const std::int64_t i = r / draws;
          double dot = 0.0;
          for (std::int64_t c = 0; c < k; ++c)
            dot += gh[static_cast<std::size_t>(i * k + c)] * p[static_cast<std::size_t>(r * k + c)] /
                   mean[static_cast<std::size_t>(i * k + c)];
          for (std::int64_t c = 0; c < k; ++c) {
            const double pc = p[static_cast<std::size_t>(r * k + c)];
            const double gc = gh[static_cast<std::size_t>(i * k + c)] / mean[static_cast<std::size_t>(i * k + c)];
            dz[static_cast<std::size_t>(r * k + c)] = static_cast<float>(pc * (gc - dot) / static_cast<double>(draws));
          }
        }
        z.accumulate_grad_owned(Tensor::from_vector(dz, {rows, k}).to(device));
      });
}
}  // namespace

ExpectedScoresModel::ExpectedScoresModel(std::shared_ptr<PixelDpNet> net, std::int64_t draws, bool fixed_noise,
                                         std::uint32_t phase)
    : m_net(std::move(net)), m_draws(draws), m_fixed(fixed_noise), m_phase(phase) {
  AEGIS_CHECK(m_net != nullptr, "ExpectedScoresModel needs a PixelDP network");
  AEGIS_CHECK(draws >= 1, "expected scores: draws per pass " << draws << " must be at least 1");
  AEGIS_CHECK(phase < NoiseLayer::kFixedStepBase, "phase " << phase << " must be below " << NoiseLayer::kFixedStepBase);
  register_module("net", m_net);
}

Var ExpectedScoresModel::forward(const Var& x) {
  check_images(x.value(), m_net->input_shape(), "expected-scores input x");
  if (m_fixed) m_net->noise_layer().set_next_draw(NoiseLayer::kFixedStepBase + m_phase, 0);
  return log_mean_softmax(m_net->forward(repeat_rows(x, m_draws)), m_draws);
}

}  // namespace aegis::certify
