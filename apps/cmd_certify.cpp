// aegis certify: randomized-smoothing certification (Cohen et al. 2019, CERTIFY) of a saved model
// on test examples, one Cohen-compatible TSV row per input appended as it finishes, resumable
// after a kill and splittable into shards (certify/sweep.h).
// aegis analyze: certified accuracy at radii, ACR and abstention of such files, shards merged, as
// a Markdown table or JSON, with an optional plot drawn by gnuplot (certify/analyze.h).
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>

#include "certify/analyze.h"
#include "certify/smoothing.h"
#include "certify/sweep.h"
#include "nn/data/dataset.h"
#include "nn/model_file.h"
#include "core/math_precision.h"
#include "commands.h"
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

bool nonempty_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && st.st_size > 0;
}

// Rows the sweep will certify in this run: whole chunks that still miss a row (run_sweep
// certifies such a chunk again whole).
std::int64_t inputs_to_certify(const certify::SweepFile& file, const std::vector<certify::SweepInput>& inputs,
                               std::int64_t chunk) {
  std::int64_t count = 0;
  for (std::size_t b = 0; b < inputs.size(); b += static_cast<std::size_t>(chunk)) {
    const std::size_t e = std::min(inputs.size(), b + static_cast<std::size_t>(chunk));
    for (std::size_t i = b; i < e; ++i)
      if (!file.contains(inputs[i].idx)) {
        count += static_cast<std::int64_t>(e - b);
        break;
      }
  }
  return count;
}

// --precision, with --tensor-cores as another spelling of --precision tf32.
MathPrecision certify_precision(const CertifyArgs& a) {
  const MathPrecision precision = parse_math_precision(a.precision);
  AEGIS_CHECK(!a.tensor_cores || precision == MathPrecision::Fp32 || precision == MathPrecision::Tf32,
              "--tensor-cores means --precision tf32 and contradicts --precision " << a.precision);
  return a.tensor_cores ? MathPrecision::Tf32 : precision;
}

nlohmann::json run_certify(const CertifyArgs& a) {
  AEGIS_CHECK(!a.sigmas.empty(), "--sigma needs at least one value");
  for (std::size_t i = 0; i < a.sigmas.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      AEGIS_CHECK(a.sigmas[i] != a.sigmas[j], "--sigma lists " << a.sigmas[i] << " twice");
  AEGIS_CHECK(!(a.resume && a.force), "--resume continues a sweep and --force starts it over: pass one of them");
  AEGIS_CHECK(a.batch >= 1, "--batch " << a.batch << " must be ≥ 1");
  const MathPrecision precision = certify_precision(a);
  certify::SweepSettings base;
  base.n0 = a.n0;
  base.n = a.n;
  base.alpha = a.alpha;
  base.seed = a.seed;
  base.model = a.model;
  base.data = a.data;
  base.skip = a.skip;
  base.max = a.max;
  base.shard = certify::parse_shard(a.shard);
  base.precision = precision;
  base.batch = a.batch;
  std::vector<certify::SweepSettings> settings;
  std::vector<std::string> paths;
  for (double sigma : a.sigmas) {
    settings.push_back(base);
    settings.back().sigma = sigma;
    certify::check_sweep_settings(settings.back());
    paths.push_back(a.sigmas.size() == 1 ? a.out : certify::sigma_out_path(a.out, sigma));
    AEGIS_CHECK(std::count(paths.begin(), paths.end(), paths.back()) == 1,
                "--sigma values " << sigma << " and another one print alike: both would write " << paths.back());
    AEGIS_CHECK(a.resume || a.force || !nonempty_file(paths.back()),
                paths.back() << " already exists and is not empty: pass --resume to continue that sweep or --force "
                                "to overwrite it");
  }
  const Device device = resolve_device(a.common);
  AEGIS_CHECK_AS(DeviceError, precision == MathPrecision::Fp32 || device.is_cuda(),
                 (a.tensor_cores ? std::string("--tensor-cores") : "--precision " + a.precision)
                     << " needs a CUDA device; this run is on " << device.str());
  nn::LoadedClassifier loaded = nn::load_classifier(a.model);
  const std::string fingerprint = certify::file_fingerprint(a.model);
  const nn::DatasetSplit split = nn::load_dataset(a.data, data_dir_hint(a.common));
  const nn::Dataset& test = split.test;
  check_data_fits(test, loaded.spec, a.model, a.data);
  loaded.model->to(device);
  certify::SmoothedClassifier smoothed(*loaded.model, loaded.spec.input_shape, loaded.spec.num_classes, device);

  const std::vector<std::int32_t> labels = test.labels.to_vector<std::int32_t>();
  std::vector<certify::SweepInput> inputs;
  for (std::int64_t idx : certify::select_inputs(test.size(), a.skip, a.max, base.shard))
    inputs.push_back({idx, labels[static_cast<std::size_t>(idx)]});
  const std::int64_t chunk = certify::chunk_size(a.batch, a.n0, a.n);
  const std::int64_t d = shape_numel(loaded.spec.input_shape);
  const float* images = test.images.data<float>();

  nlohmann::json sweeps = nlohmann::json::array();
  std::vector<certify::SweepRows> finished;
  std::int64_t rows_written = 0, samples_total = 0;
  double seconds_total = 0.0;
  for (std::size_t k = 0; k < settings.size(); ++k) {
    settings[k].model_fingerprint = fingerprint;
    settings[k].device = device.str();
    settings[k].num_classes = loaded.spec.num_classes;
    certify::SweepFile file(paths[k], settings[k],
                            a.resume  ? certify::OpenMode::Resume
                            : a.force ? certify::OpenMode::Overwrite
                                      : certify::OpenMode::Create);
    if (!file.resume_warning().empty()) std::cerr << "aegis: warning: " << file.resume_warning() << "\n";
    certify::SmoothingOptions opts;
    opts.sigma = settings[k].sigma;
    opts.n0 = a.n0;
    opts.n = a.n;
    opts.alpha = a.alpha;
    opts.batch = a.batch;
    opts.seed = a.seed;
    opts.precision = precision;
    certify::check_smoothing_options(opts);
    char label[64];
    std::snprintf(label, sizeof label, "certify sigma %g", opts.sigma);
    Progress bar(label, inputs_to_certify(file, inputs, chunk) * (a.n0 + a.n), "samples", !a.common.quiet);
    std::int64_t samples = 0;
    std::string rows_text = "inputs " + std::to_string(file.rows().size()) + "/" + std::to_string(inputs.size());
    const certify::ChunkCertifier certifier = [&](const std::vector<std::int64_t>& idx) {
      const auto m = static_cast<std::int64_t>(idx.size());
      Shape shape = loaded.spec.input_shape;
      shape.insert(shape.begin(), m);
      Tensor x = Tensor::empty(shape);
      for (std::int64_t i = 0; i < m; ++i)
        std::memcpy(x.data<float>() + i * d, images + idx[static_cast<std::size_t>(i)] * d,
                    static_cast<std::size_t>(d) * sizeof(float));
      const std::vector<std::uint64_t> ids(idx.begin(), idx.end());
      return smoothed.certify(x, ids, opts, [&](std::int64_t rows) {
        samples += rows;
        bar.update(samples, rows_text);
      });
    };
    const certify::SweepSummary r = certify::run_sweep(file, inputs, chunk, certifier, [&](std::int64_t done) {
      rows_text = "inputs " + std::to_string(done) + "/" + std::to_string(inputs.size());
    });
    bar.finish(rows_text);
    const double row_count = r.inputs > 0 ? static_cast<double>(r.inputs) : 1.0;
    sweeps.push_back({{"sigma", opts.sigma},
                      {"file", paths[k]},
                      {"inputs", r.inputs},
                      {"resumed", r.resumed},
                      {"written", r.written},
                      {"certified_accuracy_r0", static_cast<double>(r.correct) / row_count},
                      {"abstention_rate", static_cast<double>(r.abstained) / row_count},
                      {"samples", samples},
                      {"samples_per_second", r.seconds > 0 ? static_cast<double>(samples) / r.seconds : 0.0},
                      {"seconds", r.seconds}});
    rows_written += r.written;
    samples_total += samples;
    seconds_total += r.seconds;
    finished.push_back({paths[k], settings[k], file.rows()});
  }
  // The table `aegis analyze` prints for these files, from the rows in memory.
  certify::AnalyzeOptions analyze_options;
  analyze_options.radii = a.radii;
  const certify::Analysis analysis = certify::analyze_rows(finished, analyze_options);
  for (std::size_t k = 0; k < settings.size(); ++k) {
    const auto curve = std::find_if(analysis.curves.begin(), analysis.curves.end(),
                                    [&](const certify::SweepCurve& c) { return c.files.front() == paths[k]; });
    sweeps[k]["certified_accuracy"] = curve->certified_accuracy;
    sweeps[k]["acr"] = curve->acr;
    sweeps[k]["clean_accuracy"] = curve->clean_accuracy;
    sweeps[k]["max_radius"] = curve->max_radius;
  }
  return nlohmann::json{
      {"command", "certify"},
      {"model_file", a.model},
      {"model", loaded.spec.name},
      {"dataset", a.data},
      {"device", device.str()},
      {"n0", a.n0},
      {"n", a.n},
      {"alpha", a.alpha},
      {"seed", a.seed},
      {"batch", a.batch},
      {"precision", math_precision_name(precision)},
      {"chunk", chunk},
      {"skip", a.skip},
      {"max", a.max},
      {"shard", a.shard},
      {"radii", analysis.radii},
      {"sweeps", sweeps},
      {"rows_written", rows_written},
      {"samples_per_second", seconds_total > 0 ? static_cast<double>(samples_total) / seconds_total : 0.0},
      {"seconds", seconds_total},
      // Whether the batches replayed a captured CUDA graph (never on the CPU), and why not if it failed.
      {"cuda_graph", smoothed.stats().cuda_graph()},
      {"cuda_graph_launches", smoothed.stats().graph_launches},
      {"cuda_graph_failure", smoothed.stats().graph_failure}};
}

}  // namespace

Runner add_certify(CLI::App& app) {
  auto a = std::make_shared<CertifyArgs>();
  auto* cmd = app.add_subcommand(
      "certify", "certify test examples with randomized smoothing; Cohen-compatible TSV rows, resumable, shardable");
  cmd->add_option("--model", a->model, "model file written by `aegis train`")->required();
  cmd->add_option("--data", a->data, "dataset spec, as for train (its test split is certified)")->capture_default_str();
  cmd->add_option("--sigma", a->sigmas, "noise level(s) σ, comma-separated; several: one file per σ")
      ->required()
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
    nlohmann::json j = run_certify(*a);
    if (a->common.json) {
      std::cout << j.dump() << std::endl;
      return 0;
    }
    for (const auto& sw : j["sweeps"])
      std::printf(
          "sigma %g: %lld rows in %s (%lld resumed, %lld written), certified accuracy at r=0 %.4f, ACR %.3f, "
          "abstained %.4f, %.0f samples/s, %.1f s\n",
          sw["sigma"].get<double>(), sw["inputs"].get<long long>(), sw["file"].get<std::string>().c_str(),
          sw["resumed"].get<long long>(), sw["written"].get<long long>(), sw["certified_accuracy_r0"].get<double>(),
          sw["acr"].get<double>(), sw["abstention_rate"].get<double>(), sw["samples_per_second"].get<double>(),
          sw["seconds"].get<double>());
    return 0;
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
  CLI::Option* sigma = cmd->add_option("--sigma", a->sigma, "σ of every file (default: each file's .json settings)")
                            ->check(positive());
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
    if (!a->json) {
      std::cout << certify::markdown_table(r);
      if (!a->plot.empty()) std::cerr << "aegis: wrote " << a->plot << "\n";
      return 0;
    }
    nlohmann::json curves = nlohmann::json::array();
    for (const certify::SweepCurve& c : r.curves)
      curves.push_back({{"label", c.label},
                        {"sigma", std::isnan(c.sigma) ? nlohmann::json() : nlohmann::json(c.sigma)},
                        {"files", c.files},
                        {"inputs", c.rows.size()},
                        {"certified_accuracy", c.certified_accuracy},
                        {"acr", c.acr},
                        {"abstention_rate", c.abstention_rate},
                        {"clean_accuracy", c.clean_accuracy},
                        {"max_radius", c.max_radius}});
    nlohmann::json j{{"command", "analyze"}, {"radii", r.radii}, {"curves", curves}, {"warnings", r.warnings}};
    if (a->envelope) j["envelope"] = r.envelope;
    if (!a->plot.empty()) j["plot"] = a->plot;
    std::cout << j.dump() << std::endl;
    return 0;
  };
}

}  // namespace aegis::app
