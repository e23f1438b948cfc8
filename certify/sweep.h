// Resumable certification sweeps: the Cohen-compatible TSV file that `aegis certify` appends to,
// its settings sidecar, the choice of inputs (--skip, --max, --shard), and the loop that
// certifies inputs chunk by chunk and writes one row per input as soon as it is known.
//
// Rows (the format of Cohen, Rosenfeld, Kolter 2019's certify script, so their analysis reads
// our files): a header line "idx\tlabel\tpredict\tradius\tcorrect\ttime", then per input its
// test-set index, true label, smoothed prediction (-1: abstain), certified L2 radius, 1 when
// predict == label else 0, and the wall time spent on it as h:mm:ss.ffffff (Python's
// str(timedelta)). Cohen prints the radius with 3 significant digits; we print 6 (%.6g), so
// certified accuracy at fine radii is not limited by the file.
// Settings: <file>.json beside the TSV records σ, n0, n, α, seed, the model (path and a
// fingerprint of its bytes), the data spec, skip, max, shard and the forward precision; resuming
// refuses a file whose settings differ, and `aegis analyze` reads σ from it.
// Durability: each row is one write() on an O_APPEND descriptor followed by fdatasync(), so a
// SIGKILL (or a power cut) loses at most the row in flight, and resuming cuts a partial last
// line off. A certificate depends only on (model, x, idx, seed, n0, n, σ) (certify/smoothing.h),
// so a resumed or sharded sweep writes the same rows as one uninterrupted run, time excepted.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "certify/smoothing.h"

namespace aegis::certify {

// ---- rows ------------------------------------------------------------------------------------
struct SweepRow {
  std::int64_t idx = 0;
  std::int64_t label = 0;
  std::int64_t predict = -1;  // -1: abstain
  double radius = 0.0;
  bool correct = false;
  double seconds = 0.0;  // the time column
};
// The row of one CERTIFY result: predict −1 and radius 0 when abstaining, correct = (predict == label).
SweepRow sweep_row(std::int64_t idx, std::int64_t label, const Certificate& certificate, double seconds = 0.0);

extern const char* const kSweepHeader;  // without the newline

// Equal in every column but time, compared as the file prints them (radius to 6 digits).
bool same_result(const SweepRow& a, const SweepRow& b);

std::string format_elapsed(double seconds);   // 0:00:01.250000
std::string format_row(const SweepRow& row);  // one line with its '\n'
// Parses one line without its newline; IoError naming `where` (file:line) and the bad field.
// The time column also accepts Python's "N day(s), h:mm:ss" and a missing fraction.
SweepRow parse_row(const std::string& line, const std::string& where);

struct SweepTsv {
  std::vector<SweepRow> rows;
  std::uint64_t complete_bytes = 0;  // up to and including the last complete line
  bool partial_tail = false;         // bytes after the last newline were dropped
  bool header_only_prefix = false;   // the file holds only a beginning of the header line
};
// Reads a sweep file: the header must be kSweepHeader; every line must parse. With drop_partial_tail
// (resuming), bytes after the last newline are a row cut off by a kill and are ignored;
// otherwise a last line without newline must be a complete row. IoError names file:line.
SweepTsv read_sweep_tsv(const std::string& path, bool drop_partial_tail);

// ---- which inputs ----------------------------------------------------------------------------
struct Shard {
  std::int64_t index = 0;  // 0-based
  std::int64_t count = 1;
};
// "i/k" with 0 ≤ i < k; InvalidArgument naming the text otherwise.
Shard parse_shard(const std::string& text);

// Which test examples a run takes (`aegis certify` and `aegis verify`: --skip, --max, --shard):
// idx < max (max 0: all) with idx ≡ 0 (mod skip) (the --skip of Cohen's script), then of those
// the ones at positions ≡ shard.index (mod shard.count).
struct InputSelection {
  std::int64_t skip = 1;  // ≥ 1
  std::int64_t max = 0;   // ≥ 0 (0: all)
  Shard shard;            // 0 ≤ index < count
};
// InvalidArgument naming the bad value.
void check_input_selection(const InputSelection& selection);
std::vector<std::int64_t> select_inputs(std::int64_t dataset_size, const InputSelection& selection);
std::vector<std::int64_t> select_inputs(std::int64_t dataset_size, std::int64_t skip, std::int64_t max,
                                        const Shard& shard);

// ---- settings sidecar ------------------------------------------------------------------------
struct SweepSettings {
  // CERTIFY's σ, n0, n, α, seed and forward precision, and the batch size the rows were computed
  // with. The batch is not part of the settings a resume must match: a different batch size (or
  // device) gives equally valid certificates, but the forward pass rounds differently, so a near-
  // tie can come out differently than in one uninterrupted run. A sidecar written before the
  // batch was recorded reads as batch 0 (unknown). "precision" in the sidecar; files written
  // before it existed hold "tensor_cores": true (read as Tf32) or nothing (Fp32).
  SmoothingOptions smoothing;
  std::string model;              // as given (informational)
  std::string model_fingerprint;  // file_fingerprint(model); what resuming compares
  std::string data;               // dataset spec
  InputSelection inputs;
  std::string device;  // how the rows were computed ("" when unknown); not compared on resume
  // The model's number of classes, when the caller knows it (0: unknown). Not stored in the
  // sidecar; resuming checks that every earlier row predicts one of these classes.
  std::int64_t num_classes = 0;
};

// The smoothing options (check_smoothing_options; batch 0 is accepted as "not recorded") and
// the input selection: InvalidArgument naming the bad value otherwise.
void check_sweep_settings(const SweepSettings& s);
std::string settings_path(const std::string& tsv_path);  // tsv_path + ".json"
// Written to a temporary file and renamed into place, so a kill leaves the old or the new one.
void write_settings(const std::string& tsv_path, const SweepSettings& s);
// IoError naming the sidecar when it is missing or malformed.
SweepSettings read_settings(const std::string& tsv_path);
bool has_settings(const std::string& tsv_path);
// "" when a and b describe the same sweep (the model path is not compared, its fingerprint is),
// else the first difference ("sigma 0.5 vs 0.25"). ignore_shard_index: shards of one sweep match.
std::string settings_difference(const SweepSettings& a, const SweepSettings& b, bool ignore_shard_index);

// "fnv1a64:<16 hex digits>" of the file's bytes (FNV-1a, 64-bit); IoError when unreadable.
std::string file_fingerprint(const std::string& path);
// With several σ, one file per σ: "out.tsv" → "out_sigma0.25.tsv" (before the last extension).
std::string sigma_out_path(const std::string& out, double sigma);

// ---- the file being written ------------------------------------------------------------------
enum class OpenMode {
  Create,     // refuse an existing non-empty file (the error suggests --resume or --force)
  Overwrite,  // --force: start over
  Resume,     // --resume: continue an existing file with the same settings, or start one
};

class SweepFile {
 public:
  // Checks the settings, opens the TSV for appending under an exclusive lock (flock; IoError when
  // another process holds it), and writes or verifies the sidecar (on resume after reading the
  // rows and cutting a partial last line off).
  SweepFile(std::string path, const SweepSettings& settings, OpenMode mode);
  ~SweepFile();
  SweepFile(const SweepFile&) = delete;
  SweepFile& operator=(const SweepFile&) = delete;

  // One write() of the whole line, then fdatasync(); IoError naming the file on failure.
  void append(const SweepRow& row);

  const std::string& path() const { return m_path; }
  // Found on resume + appended, as the file holds them (radius to 6 significant digits).
  const std::vector<SweepRow>& rows() const { return m_rows; }
  std::int64_t resumed_rows() const { return m_resumed; }
  // After a resume with another batch size or device than the file was started with: says so
  // (rows may then differ from an uninterrupted run's in rare near-ties); empty otherwise.
  const std::string& resume_warning() const { return m_resume_warning; }
  bool contains(std::int64_t idx) const { return m_done.count(idx) != 0; }

 private:
  void resume_existing(const SweepSettings& settings);
  void start_new(const SweepSettings& settings);

  std::string m_path;
  int m_fd = -1;
  std::vector<SweepRow> m_rows;
  std::unordered_set<std::int64_t> m_done;
  std::int64_t m_resumed = 0;
  std::string m_resume_warning;
};

// ---- the sweep -------------------------------------------------------------------------------
struct SweepInput {
  std::int64_t idx = 0;
  std::int64_t label = 0;
};

// Certifies the inputs with these test-set indices (one chunk) and returns one Certificate each,
// in order. The CLI wraps SmoothedClassifier::certify; tests pass deterministic fakes.
using ChunkCertifier = std::function<std::vector<Certificate>(const std::vector<std::int64_t>& idx)>;

struct SweepSummary {
  std::int64_t inputs = 0;     // rows the sweep has in the end (resumed + written)
  std::int64_t resumed = 0;    // rows that were already in the file
  std::int64_t written = 0;    // rows this run appended
  std::int64_t correct = 0;    // over all rows: certified accuracy at radius 0 = correct / inputs
  std::int64_t abstained = 0;  // over all rows
  double seconds = 0.0;        // this run's certification time
};

// Inputs per SmoothedClassifier::certify call: enough that n0 + n noisy samples of each fill
// one forward batch when n is small, m = max(1, batch / (n0 + n)), at most 64.
std::int64_t chunk_size(std::int64_t batch, std::int64_t n0, std::int64_t n);

// Certifies every input the file does not hold yet and appends its row, in the given order, in
// chunks of `chunk` inputs that are fixed slices of `inputs` (so a resumed run certifies the same
// chunks as an uninterrupted one; a chunk with some rows already written is certified again whole
// and only its missing rows are appended). on_chunk(rows in the file) after each chunk. Rows
// already in the file must be inputs of this sweep with the same label (else IoError: the file
// belongs to another sweep). The time column of a chunk's rows is its wall time / its size.
SweepSummary run_sweep(SweepFile& file, const std::vector<SweepInput>& inputs, std::int64_t chunk,
                       const ChunkCertifier& certify, const std::function<void(std::int64_t)>& on_chunk = {});

// The pieces of run_sweep that a sweep over several processes (certify/sweep_ranks.h) shares:
// rows already in the file must be inputs of this sweep with the same label (IoError otherwise);
// the rows of one certified chunk the file misses are appended (returns how many); the summary
// counts over all rows of the file and this run's time since `start`.
void check_file_rows(const SweepFile& file, const std::vector<SweepInput>& inputs);
std::int64_t append_chunk(SweepFile& file, const std::vector<SweepInput>& chunk, const std::vector<Certificate>& certs,
                          double seconds_per_input);
void finish_summary(const SweepFile& file, std::chrono::steady_clock::time_point start, SweepSummary& s);

}  // namespace aegis::certify
