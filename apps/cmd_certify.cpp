// aegis certify: randomized-smoothing certification (Cohen et al. 2019, CERTIFY) of a saved model
// on test examples, one Cohen-compatible TSV row per input appended as it finishes, resumable
// after a kill and splittable into shards (certify/sweep.h).
// aegis analyze: certified accuracy at radii, ACR and abstention of such files, shards merged, as
// a Markdown table or JSON, with an optional plot drawn by gnuplot (certify/analyze.h).
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "certify/analyze.h"
#include "certify/certify_run.h"
#include "certify/smoothing.h"
#include "certify/sweep.h"
#include "commands.h"
#include "core/math_precision.h"
#include "core/mpi.h"
#include "nn/data/dataset.h"
#include "nn/model_file.h"
#include "options.h"
#include "progress.h"

namespace aegis::app {

namespace {

struct CertifyArgs {
  CommonOptions common;
  std::string model, data = "fashion-mnist", out, shard = "0/1", precision = "fp32";
  std::vector<double> sigmas, radii;
  std::int64_t n0 = 100, n = 100000, batch = 1000, skip = 1, max = 0;
  double alpha = 0.001;
  std::uint64_t seed = 0;
  bool resume = false, force = false, tensor_cores = false;
};

// --precision, with --tensor-cores as another spelling of --precision tf32.
MathPrecision certify_precision(const CertifyArgs& a) {
  const MathPrecision precision = parse_math_precision(a.precision);
  AEGIS_CHECK(!a.tensor_cores || precision == MathPrecision::Fp32 || precision == MathPrecision::Tf32,
              "--tensor-cores means --precision tf32 and contradicts --precision " << a.precision);
  return a.tensor_cores ? MathPrecision::Tf32 : precision;
}

nlohmann::json run_certify(const CertifyArgs& a) {
  AEGIS_CHECK(!(a.resume && a.force), "--resume continues a sweep and --force starts it over: pass one of them");
  certify::CertifyRunOptions o;
  o.sigmas = a.sigmas;
  o.smoothing.n0 = a.n0;
  o.smoothing.n = a.n;
  o.smoothing.alpha = a.alpha;
  o.smoothing.batch = a.batch;
  o.smoothing.seed = a.seed;
  o.smoothing.precision = certify_precision(a);
  o.inputs = {a.skip, a.max, certify::parse_shard(a.shard)};
  o.out = a.out;
  o.mode = a.resume ? certify::OpenMode::Resume : a.force ? certify::OpenMode::Overwrite : certify::OpenMode::Create;
  o.radii = a.radii;
  o.model_file = a.model;
  o.data = a.data;
  const Device device = resolve_device(a.common);
  AEGIS_CHECK_AS(DeviceError, o.smoothing.precision == MathPrecision::Fp32 || device.is_cuda(),
                 (a.tensor_cores ? std::string("--tensor-cores") : "--precision " + a.precision)
                     << " needs a CUDA device; this run is on " << device.str());
  CliProgress progress(!a.common.quiet);
  nlohmann::json j = certify::to_json(certify::certify_file(o, data_dir_hint(a.common), device, &progress));
  j["command"] = "certify";
  j["shard"] = a.shard;
  return j;
}

}  // namespace

Runner add_certify(CLI::App& app) {
  auto a = std::make_shared<CertifyArgs>();
  auto* cmd = app.add_subcommand(
      "certify", "certify test examples with randomized smoothing; Cohen-compatible TSV rows, resumable, shardable");
  cmd->add_option("--model", a->model, "model file written by `aegis train`")->required();
  cmd->add_option("--data", a->data, "dataset spec, as for train (its test split is certified)")->capture_default_str();
  cmd->add_option("--sigma", a->sigmas,
                  "noise level(s) σ, comma-separated; several: one file per σ (default: the model's training "
                  "--noise-sigma)")
      ->delimiter(',')
      ->check(positive());
  cmd->add_option("--n0", a->n0, "selection samples per input")
      ->capture_default_str()
      ->check(integer_in(1, kMaxSamples));
  cmd->add_option("--n", a->n, "estimation samples per input")
      ->capture_default_str()
      ->check(integer_in(1, kMaxSamples));
  cmd->add_option("--alpha", a->alpha, "failure probability of each certificate")
      ->capture_default_str()
      ->check(open_unit());
  cmd->add_option("--batch", a->batch, "noisy inputs per forward pass")
      ->capture_default_str()
      ->check(integer_in(1, kMaxBatch));
  cmd->add_option("--skip", a->skip, "certify every K-th test example (idx ≡ 0 mod K)")
      ->capture_default_str()
      ->check(integer_in(1, kMaxExamples));
  cmd->add_option("--max", a->max, "only test examples with idx < M (0: all)")
      ->capture_default_str()
      ->check(integer_in(0, kMaxExamples));
  cmd->add_option("--shard", a->shard, "i/k: this process takes the i-th of k interleaved parts (0-based)")
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "noise seed; the same seed gives the same rows")
      ->capture_default_str()
      ->check(seed_value());
  cmd->add_option("--out", a->out, "TSV file (with several σ: _sigma<σ> before the extension)")->required();
  cmd->add_flag("--resume", a->resume, "continue an interrupted sweep in --out (same settings required)");
  cmd->add_flag("--force", a->force, "overwrite an existing --out");
  cmd->add_option("--precision", a->precision,
                  "GPU only for all but fp32: fp32, tf32 (TF32 tensor cores), bf16 or fp16 (matrix-product and "
                  "convolution operands rounded to 16 bits, float32 accumulation); recorded in the settings")
      ->capture_default_str();
  cmd->add_flag("--tensor-cores", a->tensor_cores, "the same as --precision tf32");
  cmd->add_option("--radii", a->radii,
                  "radii of the certified-accuracy summary, comma-separated (default as for analyze)")
      ->delimiter(',')
      ->check(non_negative());
  add_common_options(*cmd, a->common);
  return [a]() {
    const nlohmann::json result = run_certify(*a);
    if (mpi::world().rank != 0) return 0;  // under mpirun, rank 0 prints the run's result
    return print_result(result, a->common.json, [](const nlohmann::json& j) {
      for (const auto& sw : j["sweeps"])
        std::printf(
            "sigma %g: %lld rows in %s (%lld resumed, %lld written), certified accuracy at r=0 %.4f, ACR %.3f, "
            "abstained %.4f, %.0f samples/s, %.1f s\n",
            sw["sigma"].get<double>(), sw["inputs"].get<long long>(), sw["file"].get<std::string>().c_str(),
            sw["resumed"].get<long long>(), sw["written"].get<long long>(), sw["certified_accuracy_r0"].get<double>(),
            sw["acr"].get<double>(), sw["abstention_rate"].get<double>(), sw["samples_per_second"].get<double>(),
            sw["seconds"].get<double>());
    });
  };
}

Runner add_analyze(CLI::App& app) {
  struct AnalyzeArgs {
    std::vector<std::string> files;
    std::vector<double> radii;
    double sigma = 0.0;
    std::string plot;
    bool json = false, envelope = false;
  };
  auto a = std::make_shared<AnalyzeArgs>();
  auto* cmd = app.add_subcommand("analyze", "certified accuracy at radii, ACR and abstention of certify TSV files");
  cmd->add_option("files", a->files, "TSV files written by `aegis certify` (shards are merged)")->required();
  cmd->add_option("--radii", a->radii, "radii, comma-separated (default 0, 0.25, ... up to the largest)")
      ->delimiter(',')
      ->check(non_negative());
  CLI::Option* sigma =
      cmd->add_option("--sigma", a->sigma, "σ of every file (default: each file's .json settings)")->check(positive());
  cmd->add_option("--plot", a->plot,
                  "draw certified accuracy against radius into this .pdf, .svg or .png file (needs gnuplot)");
  cmd->add_flag("--envelope", a->envelope,
                "add the best over σ at each radius: a table row, a JSON key and a wide grey curve in the plot");
  cmd->add_flag("--json", a->json, "print one JSON object with the results on stdout");
  return [a, sigma]() {
    if (!a->plot.empty()) certify::plot_format(a->plot);  // a wrong extension fails before any work
    certify::AnalyzeOptions o;
    o.radii = a->radii;
    if (sigma->count() > 0) o.sigma = a->sigma;
    o.envelope = a->envelope;
    const certify::Analysis r = certify::analyze_sweeps(a->files, o);
    if (!a->plot.empty()) certify::plot_certified_accuracy(r, a->plot, {a->envelope});
    for (const std::string& w : r.warnings) std::cerr << "aegis: warning: " << w << "\n";
    nlohmann::json j = certify::to_json(r, a->envelope);
    j["command"] = "analyze";
    if (!a->plot.empty()) j["plot"] = a->plot;
    return print_result(j, a->json, [&](const nlohmann::json&) {
      std::cout << certify::markdown_table(r);
      if (!a->plot.empty()) std::cerr << "aegis: wrote " << a->plot << "\n";
    });
  };
}

}  // namespace aegis::app
