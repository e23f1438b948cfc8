// A certification run (certify/certify_run.h): one resumable sweep per σ over the selected test
// examples, and the summary of the files.
#include "certify/certify_run.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "certify/sweep_ranks.h"
#include "core/error.h"
#include "core/mpi.h"
#include "nn/job.h"
#include "nn/model_file.h"

namespace aegis::certify {

namespace {

// Rows the sweep will certify in this run: whole chunks that still miss a row (run_sweep
// certifies such a chunk again whole).
std::int64_t inputs_to_certify(const SweepFile& file, const std::vector<SweepInput>& inputs, std::int64_t chunk) {
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

void check_options(const CertifyRunOptions& o, const std::vector<std::string>& paths, const Device& device) {
  AEGIS_CHECK(!o.sigmas.empty(), "certify: no sigma given");
  for (std::size_t i = 0; i < o.sigmas.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      AEGIS_CHECK(o.sigmas[i] != o.sigmas[j], "certify: sigma " << o.sigmas[i] << " is listed twice");
  for (std::size_t k = 0; k < paths.size(); ++k)
    AEGIS_CHECK(std::count(paths.begin(), paths.end(), paths[k]) == 1,
                "certify: sigma " << o.sigmas[k] << " and another one print alike: both would write " << paths[k]);
  AEGIS_CHECK_AS(DeviceError, o.smoothing.precision == MathPrecision::Fp32 || device.is_cuda(),
                 "certify: precision " << math_precision_name(o.smoothing.precision)
                                       << " needs a CUDA device; this run is on " << device.str());
}

}  // namespace

std::vector<Certificate> certify_examples(SmoothedClassifier& smoothed, const nn::Dataset& data,
                                          const std::vector<std::int64_t>& idx, const SmoothingOptions& options,
                                          const SampleCallback& on_batch) {
  const auto m = static_cast<std::int64_t>(idx.size());
  const Shape& input_shape = smoothed.input_shape();
  const std::int64_t d = shape_numel(input_shape);
  AEGIS_CHECK(data.images.dim() >= 1 && shape_numel(data.images.shape()) == data.size() * d,
              "certify: the dataset's images " << shape_str(data.images.shape()) << " do not hold inputs of shape "
                                               << shape_str(input_shape));
  Shape shape = input_shape;
  shape.insert(shape.begin(), m);
  Tensor x = Tensor::empty(shape);
  const float* images = data.images.data<float>();
  for (std::int64_t i = 0; i < m; ++i) {
    const std::int64_t j = idx[static_cast<std::size_t>(i)];
    AEGIS_CHECK(j >= 0 && j < data.size(), "certify: index " << j << " is outside the dataset's " << data.size());
    std::memcpy(x.data<float>() + i * d, images + j * d, static_cast<std::size_t>(d) * sizeof(float));
  }
  const std::vector<std::uint64_t> ids(idx.begin(), idx.end());
  return smoothed.certify(x, ids, options, on_batch);
}

CertifyRun run_certify(SmoothedClassifier& smoothed, const nn::Dataset& test, const CertifyRunOptions& options,
                       ProgressSink* progress) {
  // Under mpirun every rank runs this with the same options; rank 0 alone opens the files, reports
  // progress and summarizes, the others certify the chunks it hands out (certify/sweep_ranks.h).
  const bool writer = mpi::world().rank == 0;
  ProgressSink& report = progress_or_silent(writer ? progress : nullptr);
  std::vector<std::string> paths;
  for (double sigma : options.sigmas)
    paths.push_back(options.sigmas.size() == 1 ? options.out : sigma_out_path(options.out, sigma));
  check_options(options, paths, smoothed.device());
  std::vector<SweepSettings> settings;
  for (double sigma : options.sigmas) {
    SweepSettings s;
    s.smoothing = options.smoothing;
    s.smoothing.sigma = sigma;
    s.model = options.model_file;
    s.data = options.data;
    s.inputs = options.inputs;
    s.device = smoothed.device().str();
    s.num_classes = smoothed.num_classes();
    check_sweep_settings(s);
    settings.push_back(s);
  }
  // Checked before the first sweep starts, so that no file is touched when a later one would be
  // refused (SweepFile checks again when it opens each).
  if (options.mode == OpenMode::Create && writer)
    for (const std::string& p : paths) {
      struct stat st {};
      AEGIS_CHECK(::stat(p.c_str(), &st) != 0 || st.st_size == 0,
                  p << " already exists and is not empty: pass --resume to continue that sweep or --force to "
                       "overwrite it");
    }
  const std::string fingerprint = writer ? file_fingerprint(options.model_file) : "";

  const std::vector<std::int32_t> labels = test.labels.to_vector<std::int32_t>();
  std::vector<SweepInput> inputs;
  for (std::int64_t idx : select_inputs(test.size(), options.inputs))
    inputs.push_back({idx, labels[static_cast<std::size_t>(idx)]});
  const SmoothingOptions& o = options.smoothing;
  CertifyRun run;
  run.chunk = chunk_size(o.batch, o.n0, o.n);
  run.ranks = mpi::world().size;

  std::vector<SweepRows> finished;
  for (std::size_t k = 0; k < settings.size(); ++k) {
    settings[k].model_fingerprint = fingerprint;
    std::unique_ptr<SweepFile> file;
    if (writer) file = std::make_unique<SweepFile>(paths[k], settings[k], options.mode);
    if (file && !file->resume_warning().empty()) report.warning(file->resume_warning());
    const SmoothingOptions& sigma_options = settings[k].smoothing;
    char label[64];
    std::snprintf(label, sizeof label, "certify sigma %g", sigma_options.sigma);
    report.begin(label, file ? inputs_to_certify(*file, inputs, run.chunk) * (o.n0 + o.n) : 0, "samples");
    std::int64_t samples = 0;
    const auto inputs_text = [&](std::size_t done) {
      return "inputs " + std::to_string(done) + "/" + std::to_string(inputs.size());
    };
    std::string rows_text = inputs_text(file ? file->rows().size() : 0);
    const ChunkCertifier certifier = [&](const std::vector<std::int64_t>& idx) {
      return certify_examples(smoothed, test, idx, sigma_options, [&](std::int64_t rows) {
        samples += rows;
        report.update(samples, rows_text);
      });
    };
    SigmaSweep sweep;
    sweep.summary = run_sweep_ranks(
        file.get(), inputs, run.chunk, certifier,
        [&](std::int64_t done) { rows_text = inputs_text(static_cast<std::size_t>(done)); },
        [&](std::int64_t remote_inputs) {
          samples += remote_inputs * (o.n0 + o.n);
          report.update(samples, rows_text);
        });
    report.end(rows_text);
    sweep.sigma = sigma_options.sigma;
    sweep.file = paths[k];
    sweep.samples = samples;
    run.rows_written += sweep.summary.written;
    run.samples += samples;
    run.seconds += sweep.summary.seconds;
    run.sweeps.push_back(sweep);
    if (file) finished.push_back({paths[k], settings[k], file->rows()});
  }
  run.sampling = smoothed.stats();
  if (!writer) return run;  // the files and their summary are rank 0's
  // The summary `aegis analyze` prints for these files, from the rows in memory.
  AnalyzeOptions analyze_options;
  analyze_options.radii = options.radii;
  const Analysis analysis = analyze_rows(finished, analyze_options);
  run.radii = analysis.radii;
  for (SigmaSweep& sweep : run.sweeps) {
    const auto curve = std::find_if(analysis.curves.begin(), analysis.curves.end(),
                                    [&](const SweepCurve& c) { return c.files.front() == sweep.file; });
    AEGIS_CHECK(curve != analysis.curves.end(), "certify: no summary for " << sweep.file);
    sweep.curve = *curve;
  }
  return run;
}

double trained_noise_sigma(const std::map<std::string, std::string>& metadata, const std::string& source) {
  const auto it = metadata.find("aegis.noise_sigma");
  AEGIS_CHECK(it != metadata.end(), "certify: no --sigma given, and " << source
                                        << " records no training noise (aegis.noise_sigma: it was not trained with "
                                           "--noise-sigma); give --sigma");
  double sigma = 0.0;
  try {
    std::size_t used = 0;
    sigma = std::stod(it->second, &used);
    AEGIS_CHECK(used == it->second.size(), "trailing text");
  } catch (const std::exception&) {
    AEGIS_THROW(IoError, source << ": aegis.noise_sigma '" << it->second << "' is not a number");
  }
  AEGIS_CHECK_AS(IoError, std::isfinite(sigma) && sigma > 0.0,
                 source << ": aegis.noise_sigma " << it->second << " must be positive");
  return sigma;
}

CertifyFileReport certify_file(const CertifyRunOptions& options, const std::string& data_dir, Device device,
                               ProgressSink* progress) {
  nn::LoadedClassifier loaded = nn::load_classifier(options.model_file);
  CertifyRunOptions o = options;
  if (o.sigmas.empty()) o.sigmas = {trained_noise_sigma(loaded.metadata, options.model_file)};
  const nn::DatasetSplit split = nn::load_dataset(o.data, data_dir);
  nn::check_data_fits(split.test, loaded.spec, o.model_file, o.data);
  loaded.model->to(device);
  SmoothedClassifier smoothed(*loaded.model, loaded.spec.input_shape, loaded.spec.num_classes, device);
  CertifyFileReport r;
  r.run = run_certify(smoothed, split.test, o, progress);
  r.options = o;
  r.model = loaded.spec.name;
  r.device = device.str();
  return r;
}

nlohmann::json to_json(const CertifyFileReport& report) {
  const CertifyRun& r = report.run;
  const CertifyRunOptions& o = report.options;
  nlohmann::json sweeps = nlohmann::json::array();
  for (const SigmaSweep& sw : r.sweeps) {
    const SweepSummary& s = sw.summary;
    const double rows = s.inputs > 0 ? static_cast<double>(s.inputs) : 1.0;
    sweeps.push_back({{"sigma", sw.sigma},
                      {"file", sw.file},
                      {"inputs", s.inputs},
                      {"resumed", s.resumed},
                      {"written", s.written},
                      {"certified_accuracy_r0", static_cast<double>(s.correct) / rows},
                      {"abstention_rate", static_cast<double>(s.abstained) / rows},
                      {"samples", sw.samples},
                      {"samples_per_second", s.seconds > 0 ? static_cast<double>(sw.samples) / s.seconds : 0.0},
                      {"seconds", s.seconds},
                      {"certified_accuracy", sw.curve.certified_accuracy},
                      {"acr", sw.curve.acr},
                      {"clean_accuracy", sw.curve.clean_accuracy},
                      {"max_radius", sw.curve.max_radius}});
  }
  return nlohmann::json{
      {"model_file", o.model_file},
      {"model", report.model},
      {"dataset", o.data},
      {"device", report.device},
      {"n0", o.smoothing.n0},
      {"n", o.smoothing.n},
      {"alpha", o.smoothing.alpha},
      {"seed", o.smoothing.seed},
      {"batch", o.smoothing.batch},
      {"precision", math_precision_name(o.smoothing.precision)},
      {"chunk", r.chunk},
      {"ranks", r.ranks},
      {"skip", o.inputs.skip},
      {"max", o.inputs.max},
      {"shard", std::to_string(o.inputs.shard.index) + "/" + std::to_string(o.inputs.shard.count)},
      {"radii", r.radii},
      {"sweeps", sweeps},
      {"rows_written", r.rows_written},
      {"samples_per_second", r.seconds > 0 ? static_cast<double>(r.samples) / r.seconds : 0.0},
      {"seconds", r.seconds},
      // Whether the batches replayed a captured CUDA graph (never on the CPU), and why not if it failed.
      {"cuda_graph", r.sampling.cuda_graph()},
      {"cuda_graph_launches", r.sampling.graph_launches},
      {"cuda_graph_failure", r.sampling.graph_failure}};
}

}  // namespace aegis::certify
