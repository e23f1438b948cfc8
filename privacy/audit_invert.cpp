#include "privacy/audit_invert.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/philox.h"
#include "nn/functional.h"
#include "nn/model_file.h"
#include "runtime/autograd.h"

namespace aegis::privacy {

namespace {

constexpr double kTvSmoothing = 1e-3;  // ε of the Charbonnier-smoothed TV (header comment)

void check_options(const InversionOptions& o, const std::vector<std::int64_t>& shape, std::int64_t num_classes) {
  AEGIS_CHECK(
      shape.size() == 3 && shape[0] >= 1 && shape[1] >= 1 && shape[2] >= 1,
      "model inversion needs image inputs C x H x W; this model takes " << shape.size() << "-dimensional inputs");
  AEGIS_CHECK(num_classes >= 2, "model inversion needs at least 2 classes, the model has " << num_classes);
  AEGIS_CHECK(o.steps >= 1, "--steps " << o.steps << " must be at least 1");
  AEGIS_CHECK(o.patience >= 1, "--patience " << o.patience << " must be at least 1");
  AEGIS_CHECK(std::isfinite(o.lr) && o.lr > 0.0, "--lr " << o.lr << " must be positive and finite");
  AEGIS_CHECK(std::isfinite(o.tv) && o.tv >= 0.0, "--tv " << o.tv << " must be non-negative and finite");
  AEGIS_CHECK(o.min_cost >= 0.0 && o.min_cost < 1.0, "--min-cost " << o.min_cost << " must lie in [0, 1)");
  std::vector<bool> seen(static_cast<std::size_t>(num_classes), false);
  for (std::int64_t c : o.classes) {
    AEGIS_CHECK(c >= 0 && c < num_classes, "--classes: class " << c << " is outside [0, " << num_classes << ")");
    AEGIS_CHECK(!seen[static_cast<std::size_t>(c)], "--classes: class " << c << " is named twice");
    seen[static_cast<std::size_t>(c)] = true;
  }
}

// One class being inverted.
struct Track {
  std::vector<float> x;
  double best = INFINITY;
  std::int64_t since_best = 0;
  bool active = true;
};

}  // namespace

const char* inversion_start_name(InversionStart start) {
  switch (start) {
    case InversionStart::Zero:
      return "zero";
    case InversionStart::Grey:
      return "grey";
    case InversionStart::Random:
      return "random";
  }
  return "?";
}

InversionStart parse_inversion_start(const std::string& name) {
  for (InversionStart s : {InversionStart::Zero, InversionStart::Grey, InversionStart::Random})
    if (name == inversion_start_name(s)) return s;
  AEGIS_THROW(InvalidArgument, "--start " << name << " is not one of zero, grey, random");
}

double pearson_correlation(const std::vector<float>& a, const std::vector<float>& b) {
  AEGIS_CHECK(a.size() == b.size() && !a.empty(),
              "correlation of vectors of lengths " << a.size() << " and " << b.size());
  const double n = static_cast<double>(a.size());
  double ma = 0.0, mb = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) ma += a[i], mb += b[i];
  ma /= n;
  mb /= n;
  double sab = 0.0, saa = 0.0, sbb = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double da = a[i] - ma, db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return saa > 0.0 && sbb > 0.0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

double mean_squared_error(const std::vector<float>& a, const std::vector<float>& b) {
  AEGIS_CHECK(a.size() == b.size() && !a.empty(), "MSE of vectors of lengths " << a.size() << " and " << b.size());
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  return s / static_cast<double>(a.size());
}

double total_variation(const std::vector<float>& x, std::int64_t channels, std::int64_t height, std::int64_t width,
                       std::vector<float>* grad, double weight) {
  AEGIS_CHECK(static_cast<std::int64_t>(x.size()) == channels * height * width,
              "TV: image of " << x.size() << " values is not " << channels << "x" << height << "x" << width);
  const double norm = 1.0 / static_cast<double>(x.size()), e2 = kTvSmoothing * kTvSmoothing;
  double tv = 0.0;
  for (std::int64_t c = 0; c < channels; ++c)
    for (std::int64_t i = 0; i < height; ++i)
      for (std::int64_t j = 0; j < width; ++j) {
        const std::size_t at = static_cast<std::size_t>((c * height + i) * width + j);
        const std::size_t down = at + static_cast<std::size_t>(width), right = at + 1;
        const double dv = i + 1 < height ? static_cast<double>(x[down]) - x[at] : 0.0;
        const double dh = j + 1 < width ? static_cast<double>(x[right]) - x[at] : 0.0;
        const double r = std::sqrt(dv * dv + dh * dh + e2);
        tv += r - kTvSmoothing;
        if (grad) {
          // ∂r/∂x_down = dv/r, ∂r/∂x_right = dh/r, ∂r/∂x_at = −(dv + dh)/r.
          const double s = weight * norm / r;
          if (i + 1 < height) (*grad)[down] += static_cast<float>(s * dv);
          if (j + 1 < width) (*grad)[right] += static_cast<float>(s * dh);
          (*grad)[at] -= static_cast<float>(s * (dv + dh));
        }
      }
  return tv * norm;
}

std::vector<InvertedClass> invert_classes(nn::Module& model, const std::vector<std::int64_t>& shape,
                                          std::int64_t num_classes, Device device, const InversionOptions& o,
                                          ProgressSink* progress) {
  check_options(o, shape, num_classes);
  std::vector<std::int64_t> labels = o.classes;
  if (labels.empty())
    for (std::int64_t c = 0; c < num_classes; ++c) labels.push_back(c);
  const std::int64_t channels = shape[0], height = shape[1], width = shape[2], d = channels * height * width;
  model.to(device);
  nn::FrozenScope frozen(model);  // evaluation mode, no parameter gradients; restored on return

  std::vector<InvertedClass> out(labels.size());
  std::vector<Track> tracks(labels.size());
  const philox::Key start_key{o.seed, philox::kPurposeAttackStart, 0};
  for (std::size_t k = 0; k < labels.size(); ++k) {
    out[k].label = labels[k];
    std::vector<float>& x = tracks[k].x;
    x.assign(static_cast<std::size_t>(d), o.start == InversionStart::Grey ? 0.5f : 0.0f);
    if (o.start == InversionStart::Random)
      for (std::int64_t i = 0; i < d; ++i)
        x[static_cast<std::size_t>(i)] =
            philox::uniform(start_key, static_cast<std::uint64_t>(labels[k]) * static_cast<std::uint64_t>(d) +
                                           static_cast<std::uint64_t>(i));
  }

  ProgressSink& p = progress_or_silent(progress);
  p.begin("inversion", o.steps, "steps");
  // Evaluation i (i = 0..steps) sees the iterate after i steps; all active classes go through the
  // model as one batch (in evaluation mode the rows are independent).
  for (std::int64_t step = 0; step <= o.steps; ++step) {
    std::vector<std::size_t> rows;
    for (std::size_t k = 0; k < tracks.size(); ++k)
      if (tracks[k].active) rows.push_back(k);
    if (rows.empty()) break;
    const auto m = static_cast<std::int64_t>(rows.size());
    std::vector<float> batch(static_cast<std::size_t>(m * d));
    std::vector<std::int32_t> y(rows.size());
    for (std::size_t r = 0; r < rows.size(); ++r) {
      std::copy(tracks[rows[r]].x.begin(), tracks[rows[r]].x.end(), batch.begin() + static_cast<std::ptrdiff_t>(r) * d);
      y[r] = static_cast<std::int32_t>(labels[rows[r]]);
    }
    autograd::Var input(Tensor::from_vector(batch, {m, channels, height, width}).to(device), true);
    const Tensor d_labels = Tensor::from_vector(y, {m}).to(device);
    const autograd::Var losses = nn::F::cross_entropy(model.forward(input), d_labels, nn::Reduction::None);
    autograd::backward(losses, Tensor::full({m}, 1.0, DType::F32, device));
    const std::vector<float> ce = losses.value().to(Device::cpu()).to_vector<float>();
    const std::vector<float> g = input.grad().to(Device::cpu()).to_vector<float>();
    for (std::size_t r = 0; r < rows.size(); ++r) {
      Track& t = tracks[rows[r]];
      InvertedClass& c = out[rows[r]];
      const double confidence = std::exp(-static_cast<double>(ce[r]));
      std::vector<float> grad(static_cast<std::size_t>(d));
      // ∇(1 − p_y) = p_y·∇ℓ with ℓ = −ln p_y (the header comment).
      for (std::int64_t i = 0; i < d; ++i)
        grad[static_cast<std::size_t>(i)] = static_cast<float>(confidence * g[static_cast<std::size_t>(r * d + i)]);
      const double tv = total_variation(t.x, channels, height, width, o.tv > 0.0 ? &grad : nullptr, o.tv);
      const double cost = 1.0 - confidence + o.tv * tv;
      if (o.keep_costs) c.costs.push_back(cost);
      if (cost < t.best) {
        t.best = cost;
        t.since_best = 0;
        c.image = t.x;
        c.cost = cost;
        c.confidence = confidence;
        c.tv = tv;
      } else {
        ++t.since_best;
      }
      // Algorithm 1's stopping rules, then its step (projected to the pixel range).
      if (cost <= o.min_cost) {
        c.stopped = "min-cost";
      } else if (t.since_best >= o.patience) {
        c.stopped = "patience";
      } else if (step == o.steps) {
        c.stopped = "steps";
      } else {
        for (std::size_t i = 0; i < t.x.size(); ++i)
          t.x[i] = std::clamp(t.x[i] - static_cast<float>(o.lr) * grad[i], 0.0f, 1.0f);
        c.steps = step + 1;
        continue;
      }
      t.active = false;
    }
    if (step < o.steps) p.update(step + 1, "");
  }
  p.end("");
  return out;
}

std::vector<std::vector<float>> class_means(const nn::Dataset& data, std::int64_t num_classes) {
  AEGIS_CHECK(data.images.shape().size() == 4, "class means need images N x C x H x W");
  const std::int64_t n = data.size(), d = data.images.numel() / std::max<std::int64_t>(n, 1);
  std::vector<std::vector<double>> sum(static_cast<std::size_t>(num_classes),
                                       std::vector<double>(static_cast<std::size_t>(d), 0.0));
  std::vector<std::int64_t> count(static_cast<std::size_t>(num_classes), 0);
  const Tensor images = data.images.to(Device::cpu()), labels = data.labels.to(Device::cpu());
  const float* x = images.data<float>();
  const std::int32_t* y = labels.data<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    AEGIS_CHECK(y[i] >= 0 && y[i] < num_classes, data.name << ": label " << y[i] << " of example " << i
                                                           << " is outside the model's " << num_classes << " classes");
    std::vector<double>& s = sum[static_cast<std::size_t>(y[i])];
    for (std::int64_t j = 0; j < d; ++j) s[static_cast<std::size_t>(j)] += x[i * d + j];
    ++count[static_cast<std::size_t>(y[i])];
  }
  std::vector<std::vector<float>> means(sum.size(), std::vector<float>(static_cast<std::size_t>(d), 0.0f));
  for (std::size_t c = 0; c < sum.size(); ++c)
    if (count[c] > 0)
      for (std::size_t j = 0; j < sum[c].size(); ++j)
        means[c][j] = static_cast<float>(sum[c][j] / static_cast<double>(count[c]));
  return means;
}

nlohmann::json to_json(const InversionReport& r) {
  nlohmann::json classes = nlohmann::json::array();
  for (const InvertedClass& c : r.classes)
    classes.push_back({{"class", c.label},
                       {"pearson", c.pearson},
                       {"mse", c.mse},
                       {"nearest_class_mean", c.nearest},
                       {"confidence", c.confidence},
                       {"cost", c.cost},
                       {"tv", c.tv},
                       {"steps", c.steps},
                       {"stopped", c.stopped}});
  const InversionOptions& o = r.options;
  return {{"command", "audit invert"},
          {"method", "MI-Face (Fredrikson et al. 2015), TV prior"},
          {"model", r.model},
          {"dataset", r.dataset},
          {"input_shape", r.input_shape},
          {"steps", o.steps},
          {"lr", o.lr},
          {"tv_weight", o.tv},
          {"patience", o.patience},
          {"min_cost", o.min_cost},
          {"start", inversion_start_name(o.start)},
          {"seed", o.seed},
          {"classes", classes},
          {"mean_pearson", r.mean_pearson},
          {"mean_mse", r.mean_mse},
          {"mean_confidence", r.mean_confidence},
          {"identification_rate", r.identification_rate},
          {"seconds", r.seconds},
          {"plot_out", r.plot_out}};
}

InversionReport run_inversion(const InversionJob& job, const nn::Dataset& train, ProgressSink* progress) {
  const auto t0 = std::chrono::steady_clock::now();
  nn::LoadedClassifier loaded = nn::load_classifier(job.model_path);
  const Shape& shape = loaded.spec.input_shape;
  InversionReport r;
  r.model = job.model_path;
  r.dataset = job.dataset;
  r.input_shape.assign(shape.begin(), shape.end());
  r.options = job.options;
  check_options(job.options, r.input_shape, loaded.spec.num_classes);
  const Shape& data_shape = train.images.shape();
  AEGIS_CHECK(data_shape.size() == 4 && Shape(data_shape.begin() + 1, data_shape.end()) == shape,
              train.name << ": images of shape " << shape_str(data_shape) << " do not match the model's input "
                         << shape_str(shape));
  AEGIS_CHECK(train.size() > 0, train.name << ": no training examples to form class means");
  const std::vector<std::vector<float>> means = class_means(train, loaded.spec.num_classes);
  r.classes = invert_classes(*loaded.model, r.input_shape, loaded.spec.num_classes, job.device, job.options, progress);
  std::int64_t identified = 0;
  for (InvertedClass& c : r.classes) {
    c.pearson = pearson_correlation(c.image, means[static_cast<std::size_t>(c.label)]);
    c.mse = mean_squared_error(c.image, means[static_cast<std::size_t>(c.label)]);
    double best = -INFINITY;
    for (std::size_t k = 0; k < means.size(); ++k) {
      const double rho = pearson_correlation(c.image, means[k]);
      if (rho > best) best = rho, c.nearest = static_cast<std::int64_t>(k);
    }
    identified += c.nearest == c.label;
    r.mean_pearson += c.pearson;
    r.mean_mse += c.mse;
    r.mean_confidence += c.confidence;
  }
  const double k = static_cast<double>(r.classes.size());
  r.mean_pearson /= k;
  r.mean_mse /= k;
  r.mean_confidence /= k;
  r.identification_rate = static_cast<double>(identified) / k;
  if (!job.plot_out.empty()) {
    plot_inversion(r, means, job.plot_out);
    r.plot_out = job.plot_out;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace aegis::privacy
