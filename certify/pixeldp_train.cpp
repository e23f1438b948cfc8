// Training with the noise layer in place and sensitivity projection after every step
// (Lecuyer et al. 2019, §III-B), and PixelDP model files.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <sstream>

#include "certify/pixeldp.h"
#include "nn/model_file.h"
#include "nn/train.h"

namespace aegis::certify {

namespace {
// Iterations of the converged projection at the start and end of training: power iteration
// stops earlier once the estimate changes by ≤ 1e-9 relatively.
constexpr int kConvergedIterations = 2000;

// A converged projection: the persistent power iteration run to convergence.
void constrain_converged(PixelDpNet& net) {
  net.constrain(kConvergedIterations, 1e-9);
}
}  // namespace

nn::TrainResult train_pixeldp(PixelDpNet& net, const nn::Dataset& train, const PixelDpTrainOptions& options,
                              const std::function<void(const nn::StepInfo&)>& on_step,
                              const std::function<void(const nn::EpochResult&)>& on_epoch) {
  const nn::TrainOptions& o = options.train;
  nn::check_train_options(o);
  AEGIS_CHECK(options.power_iterations >= 1,
              "power iterations per step " << options.power_iterations << " must be at least 1");
  AEGIS_CHECK(train.size() > 0, "training set '" << train.name << "' is empty");
  net.to(o.device);
  net.set_requires_grad(true);
  constrain_converged(net);  // the initialization must already satisfy the constraint
  nn::TrainOptions with_projection = o;
  with_projection.after_step = [&net, &options]() { net.constrain(options.power_iterations); };  // §III-B
  // Every forward pass in training mode draws fresh noise in the noise layer.
  nn::TrainResult result = nn::train_classifier(net, train, with_projection, on_step, on_epoch);
  constrain_converged(net);
  net.zero_grad();
  return result;
}

// ---- model files -------------------------------------------------------------------------------

namespace {
const char* const kPrefix = "aegis.pixeldp.";

std::string exact(double v) {
  std::ostringstream os;
  os << std::setprecision(17) << v;
  return os.str();
}

const std::string& require(const std::map<std::string, std::string>& meta, const std::string& key,
                           const std::string& path) {
  auto it = meta.find(kPrefix + key);
  if (it == meta.end())
    AEGIS_THROW(IoError, path << ": not a PixelDP model file (metadata key '" << kPrefix << key << "' is missing)");
  return it->second;
}

double parse_double(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& path) {
  const std::string& text = require(meta, key, path);
  std::size_t used = 0;
  double v = 0.0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(v))
    AEGIS_THROW(IoError, path << ": metadata '" << kPrefix << key << "' = '" << text << "' is not a finite number");
  return v;
}
std::uint64_t parse_seed(const std::map<std::string, std::string>& meta, const std::string& path) {
  const std::string& text = require(meta, "seed", path);
  const bool digits = !text.empty() && text.size() <= 20 &&
                      std::all_of(text.begin(), text.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  std::uint64_t v = 0;
  bool fits = digits;
  for (char ch : text) {
    if (!fits) break;
    const auto d = static_cast<std::uint64_t>(ch - '0');
    fits = v <= (UINT64_MAX - d) / 10;
    v = v * 10 + d;
  }
  if (!fits)
    AEGIS_THROW(IoError,
                path << ": metadata '" << kPrefix << "seed' = '" << text << "' is not a 64-bit unsigned integer");
  return v;
}
}  // namespace

void save_pixeldp(const std::string& path, PixelDpNet& net, const nn::ModelSpec& spec, const PixelDpParams& params,
                  std::map<std::string, std::string> metadata) {
  check_pixeldp_params(params);
  AEGIS_CHECK(params.norm == net.norm(), "save_pixeldp: params are for " << pixeldp_norm_name(params.norm)
                                                                         << " but the network is built for "
                                                                         << pixeldp_norm_name(net.norm()));
  const std::string p = kPrefix;
  metadata[p + "position"] = std::to_string(net.position());
  metadata[p + "norm"] = pixeldp_norm_name(params.norm);
  metadata[p + "kind"] = noise_kind_name(net.noise_layer().noise_kind());
  metadata[p + "sigma"] = exact(net.noise_layer().scale());
  metadata[p + "L"] = exact(params.L);
  metadata[p + "eps"] = exact(params.eps);
  metadata[p + "delta"] = exact(params.norm == PixelDpNorm::L2 ? params.delta : 0.0);
  metadata[p + "sensitivity"] = exact(net.sensitivity());
  metadata[p + "sensitivity_bound"] = exact(net.sensitivity_bound());
  metadata[p + "seed"] = std::to_string(net.noise_layer().seed());
  nn::save_classifier(path, net, spec, std::move(metadata));
}

LoadedPixelDp load_pixeldp(const std::string& path) {
  nn::LoadedClassifier plain = nn::load_classifier(path);
  const auto& meta = plain.metadata;
  LoadedPixelDp out;
  out.spec = plain.spec;
  out.metadata = meta;
  const double position = parse_double(meta, "position", path);
  if (position != 0.0 && position != 1.0 && position != 2.0)
    AEGIS_THROW(IoError, path << ": metadata '" << kPrefix << "position' = " << position << " is not 0, 1 or 2");
  try {
    out.params.norm = parse_pixeldp_norm(require(meta, "norm", path));
    const NoiseKind kind = parse_noise_kind(require(meta, "kind", path));
    AEGIS_CHECK(kind == noise_kind_for(out.params.norm), "noise kind " << noise_kind_name(kind)
                                                                       << " does not match norm "
                                                                       << pixeldp_norm_name(out.params.norm));
    out.params.eps = parse_double(meta, "eps", path);
    out.params.delta = parse_double(meta, "delta", path);
    out.params.L = parse_double(meta, "L", path);
    if (out.params.norm == PixelDpNorm::L1)
      out.params.delta = 0.0;
    else
      check_pixeldp_params(out.params);
    const double scale = parse_double(meta, "sigma", path);
    out.net = std::make_shared<PixelDpNet>(plain.model, out.spec.input_shape, static_cast<int>(position),
                                           out.params.norm, scale, parse_seed(meta, path));
  } catch (const InvalidArgument& e) {
    AEGIS_THROW(IoError, path << ": inconsistent PixelDP metadata: " << e.what());
  }
  out.stored_sensitivity = parse_double(meta, "sensitivity", path);
  out.mechanism.norm = out.params.norm;
  out.mechanism.scale = out.net->noise_layer().scale();
  out.mechanism.delta = out.params.delta;
  // The certificate rests on the weights as they are, so Δ is measured again here.
  out.mechanism.sensitivity = out.net->sensitivity();
  if (!(out.mechanism.sensitivity > 0.0))
    AEGIS_THROW(IoError, path << ": the layers in front of the PixelDP noise have sensitivity "
                              << out.mechanism.sensitivity << " (all-zero weights)");
  return out;
}

}  // namespace aegis::certify
