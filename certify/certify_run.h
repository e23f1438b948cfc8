// One run of `aegis certify`: CERTIFY (Cohen et al. 2019, Alg. 2) of the test examples a
// selection chooses (--skip, --max, --shard), at one or several σ, each σ its own resumable
// sweep file (certify/sweep.h), then the summary `aegis analyze` prints for those files. The run
// gathers the selected images from the dataset itself; the caller hands it the smoothed
// classifier and the dataset, and receives one result struct.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "certify/analyze.h"
#include "certify/smoothing.h"
#include "certify/sweep.h"
#include "core/progress.h"
#include "nn/data/dataset.h"

namespace aegis::certify {

struct CertifyRunOptions {
  std::vector<double> sigmas;  // at least one, no value twice; each in turn replaces smoothing.sigma
  SmoothingOptions smoothing;  // n0, n, α, batch, seed, precision (sigma: see sigmas)
  InputSelection inputs;
  std::string out;  // the TSV; with several σ, sigma_out_path(out, σ) for each
  OpenMode mode = OpenMode::Create;
  std::vector<double> radii;  // of the summary (AnalyzeOptions::radii; empty: analyze's default)
  // Recorded in each sweep's settings sidecar: the model file (its path, and the fingerprint of
  // its bytes that resuming compares) and the dataset spec.
  std::string model_file;
  std::string data;
};

// One σ's sweep: what run_sweep did, the samples drawn, and the file's summary row (the curve
// `aegis analyze` computes for it).
struct SigmaSweep {
  double sigma = 0.0;
  std::string file;
  SweepSummary summary;
  std::int64_t samples = 0;  // noisy forward passes this run
  SweepCurve curve;
};

struct CertifyRun {
  std::vector<SigmaSweep> sweeps;  // in the order of options.sigmas
  std::vector<double> radii;       // of every curve's certified_accuracy
  std::int64_t chunk = 0;          // inputs per CERTIFY call (chunk_size)
  int ranks = 1;                   // processes of the MPI run that shared the chunks (core/mpi.h)
  std::int64_t rows_written = 0;
  std::int64_t samples = 0;
  double seconds = 0.0;
  SamplingStats sampling;  // CUDA graph replays (never on the CPU), and why capture failed
};

// Checks the options (InvalidArgument naming the bad value: σ listed twice, two σ whose file
// names print alike, a non-empty --out without Resume or Overwrite, precision other than fp32
// off the GPU), opens every sweep file, certifies what they miss, and summarizes. `test` is the
// dataset whose examples are certified; it must fit the classifier's input shape. Progress:
// one phase per σ, in samples; a resumed file's warning goes to progress->warning.
CertifyRun run_certify(SmoothedClassifier& smoothed, const nn::Dataset& test, const CertifyRunOptions& options,
                       ProgressSink* progress = nullptr);

// `aegis certify` as one library call: loads options.model_file, then the dataset options.data
// (nn::load_dataset, with `data_dir` as its search hint), checks that the model fits the test set,
// moves it to `device` and runs run_certify. With options.sigmas empty it certifies at the σ the
// model was trained with (trained_noise_sigma). The report holds the run, the options used and the
// model's zoo name.
struct CertifyFileReport {
  CertifyRunOptions options;
  std::string model;   // the zoo name the file records
  std::string device;  // where it ran
  CertifyRun run;
};
// σ of a model trained with Gaussian augmentation (its "aegis.noise_sigma" entry, written by
// `aegis train --noise-sigma`, with or without --dp). InvalidArgument when the model has none,
// IoError when the entry is not a positive number.
double trained_noise_sigma(const std::map<std::string, std::string>& metadata, const std::string& source);
CertifyFileReport certify_file(const CertifyRunOptions& options, const std::string& data_dir, Device device,
                               ProgressSink* progress = nullptr);
// `aegis certify --json`'s object: the settings, one entry per σ (file, rows resumed and written,
// certified accuracy at radius 0 and at the summary's radii, ACR, abstention, samples/s), the
// totals and the CUDA-graph statistics.
nlohmann::json to_json(const CertifyFileReport& report);

// CERTIFY of the examples of `data` at test-set indices `idx` (key indices = idx), in one call of
// smoothed.certify (the demo's evaluation; a sweep calls it once per chunk).
std::vector<Certificate> certify_examples(SmoothedClassifier& smoothed, const nn::Dataset& data,
                                          const std::vector<std::int64_t>& idx, const SmoothingOptions& options,
                                          const SampleCallback& on_batch = {});

}  // namespace aegis::certify
