// One run of `aegis verify`: the test examples it selects (--skip, --max, --shard, chosen as
// `aegis certify` chooses them: certify::select_inputs), their verified accuracy by each bound
// method asked for (certify::verify), and the optional per-example TSV.
//
// Per-example file: a header line "idx\tlabel\tverified\tmargin_lower\tmargin_<method>…" (one
// margin column per method, in the order run: margin_ibp, margin_crown), then one line per
// selected example: its test-set index, its label, 1 when some method verified it (it is correct
// and every margin lower bound z_y − z_c, c ≠ y, is > 0) else 0, the largest of the methods'
// smallest margin lower bounds, then each method's smallest margin lower bound (%.9g; "inf" for a
// one-class model). The file is written whole to a temporary file beside it (mkstemp) and renamed
// over the path, so a reader never sees a partial file and an interrupted run leaves none.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "certify/bounds.h"
#include "certify/sweep.h"
#include "core/progress.h"

namespace aegis::certify {

struct VerifyRunOptions {
  std::vector<BoundMethod> methods{BoundMethod::Interval, BoundMethod::Linear};  // at least one, no repeats
  BoundOptions bound;  // norm, eps and ReLU relaxation; `method` is set per entry of `methods`
  std::int64_t batch_size = 256;
  InputSelection inputs;         // which test examples (select_inputs)
  std::string per_example_path;  // "" writes no per-example file
};

struct VerifyRun {
  std::vector<std::int64_t> indices;  // the test-set indices verified, increasing
  std::vector<std::int32_t> labels;   // their labels
  std::vector<VerifyResult> results;  // one per method, in options.methods order
};

// Selects the examples of `test`, verifies them by every method (on_batch(method position, done,
// total) after each batch) and, when asked, writes the per-example file. InvalidArgument for bad
// options (naming the value), IoError when the file cannot be written.
VerifyRun run_verify(
    nn::Module& model, const nn::Dataset& test, const VerifyRunOptions& options,
    const std::function<void(std::size_t method, std::int64_t done, std::int64_t total)>& on_batch = {});

// The per-example file of a run (format above), replacing `path` atomically.
void write_per_example(const std::string& path, const VerifyRun& run, const std::vector<BoundMethod>& methods);

// "ibp" | "crown" | "both" (IBP, then CROWN): the methods of a verification run.
std::vector<BoundMethod> parse_bound_methods(const std::string& name);

// `aegis verify` as one library call: loads model_file, checks that bound propagation supports it,
// loads the dataset `dataset` (nn::load_dataset, `data_dir` its search hint), checks that the model
// fits the test set, moves it to `device`, runs
// run_verify (progress: one phase per method, "verify ibp", in examples) and writes the
// per-example file when asked. A model with NaN/Inf parameters verifies nothing:
// progress->warning names them.
struct VerifyFileReport {
  VerifyRunOptions options;
  std::string model_file, model, dataset, device;
  VerifyRun run;
  double seconds = 0.0;
};
VerifyFileReport verify_file(const std::string& model_file, const std::string& dataset, const std::string& data_dir,
                             const VerifyRunOptions& options, Device device, ProgressSink* progress = nullptr);
// `aegis verify --json`'s object: settings, examples, clean accuracy, and per method
// verified_accuracy_<m> and seconds_<m>.
nlohmann::json to_json(const VerifyFileReport& report);

}  // namespace aegis::certify
