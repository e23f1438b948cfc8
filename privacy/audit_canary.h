// Gradient canaries inside aegis' DP-SGD loop, shared by the one-run audit (privacy/audit_dp.cpp)
// and the many-run audit (privacy/audit_dp_many.cpp). A canary is a Dirac gradient ±C at one
// parameter coordinate (a record whose clipped gradient has the largest norm any record can
// have), inserted through DpOptimizer::set_canary before the noise; an included canary joins
// each step's batch with the sampling rate q, like every record under Poisson sampling. Its score
// is sign · Σ_steps g̃[coordinate] over the noisy gradients the optimizer releases
// (DpOptimizer::set_update_observer): what a white-box adversary who sees every update computes.
// An input canary is a record instead: a held-out example (from the test split, which no run
// trains on) with a wrong label, appended to the training set when included; its score is
// −loss of the trained model on it (lower loss: "in"), what a black-box adversary computes from
// the released model alone. Also here: the run records of the resumable many-run audit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/progress.h"
#include "privacy/dp_job.h"

namespace aegis::privacy::audit_detail {

// Setup draws of the audits: which "choice" word of kPurposeAuditSetup each one uses.
enum SetupChoice : std::uint32_t { kCoordinates = 0, kSigns = 1, kInclusion = 2, kWrongLabels = 3 };

struct Canary {
  std::int64_t coordinate = 0;  // flat index over the model's parameters, in registration order
  std::size_t param = 0;        // which parameter tensor (filled during training)
  std::int64_t element = 0;     // element within it (filled during training)
  float sign = 1.0f;
  bool included = false;
  double score = 0.0;
};

// InvalidArgument unless the run is what the audits assume: flat clipping (gradient canaries
// only), Poisson sampling, the reproducible noise, a fresh model.
void check_training(const DpJob& training, bool gradient_canaries = true);

// The m coordinates that the training data move least: Σ over batches of |∂(mean loss)/∂θ| at
// the initial weights of `training` (same seed, same initialization), ties broken by a random key
// from (seed, kPurposeAuditSetup). The choice uses the data and the seed only.
std::vector<std::int64_t> quiet_coordinates(const DpJob& training, const nn::Dataset& train, std::int64_t m,
                                            std::uint64_t seed);

// Trains `training` with the canaries (their included flags and signs as given) and adds each
// canary's score. The per-step sampling draws use step_key(seed, kPurposeAuditSampling,
// key_offset + step); noise_scale < 1 scales the noise the optimizer really adds (the ledger
// still accounts for the full noise: the test-only bug the audits must catch).
DpReport train_with_canaries(const DpJob& training, const nn::DatasetSplit& split, std::vector<Canary>& canaries,
                             std::int64_t parameters, std::uint64_t seed, std::uint64_t key_offset, double noise_scale,
                             ProgressSink* progress);

// m input canaries: the first m examples of the test split, each relabelled to one of the other
// classes keyed by (seed, kPurposeAuditSetup, kWrongLabels). InvalidArgument for m outside
// [1, test split size] or fewer than 2 classes.
nn::Dataset input_canaries(const nn::DatasetSplit& split, std::int64_t m, std::uint64_t seed);

// Trains `training` on split.train with the included canaries (examples[i] where
// canaries[i].included) appended, then sets every canary's score to −loss of the trained model on
// its example. noise_scale < 1 as in train_with_canaries.
DpReport train_with_input_canaries(const DpJob& training, const nn::DatasetSplit& split, const nn::Dataset& examples,
                                   std::vector<Canary>& canaries, double noise_scale, ProgressSink* progress);

// One run of the many-run audit as its record file holds it (audit_dp_runs.cpp).
struct RunRecord {
  std::string settings;  // everything that decides the runs: a record of other settings is refused
  std::int64_t run = 0;
  bool canary = false;
  std::uint64_t seed = 0;  // the run's training seed
  double score = 0.0;      // stored exactly (hexadecimal), so a resumed audit equals an uninterrupted one
  double seconds = 0.0;    // its training time
  DpReport training;
};

// Writes the record atomically as JSON; reads one back. IoError for a file that cannot be read
// or is not a run record.
void write_run_record(const std::string& path, const RunRecord& record);
RunRecord read_run_record(const std::string& path);

}  // namespace aegis::privacy::audit_detail
