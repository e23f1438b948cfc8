#include "certify/sweep.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "certify/stats.h"
#include "core/error.h"

namespace aegis::certify {

const char* const kSweepHeader = "idx\tlabel\tpredict\tradius\tcorrect\ttime";

namespace {

template <class T>
bool parse_number(const std::string& text, T& out) {
  const char* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, out);
  return !text.empty() && r.ec == std::errc() && r.ptr == end;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  for (std::size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1)
    fields.push_back(line.substr(start, tab - start));
  fields.push_back(line.substr(start));
  return fields;
}

// The longest time the column holds: 10^9 days, Python's timedelta.max (999999999 days,
// 23:59:59.999999) as a double rounds it (a double's step there is 2^-6 s), so that every time a
// file may carry is one format_elapsed can print back.
constexpr double kMaxElapsedSeconds = 1e9 * 86400.0;

// Python's str(timedelta): "[D day[s], ]H:MM:SS[.ffffff]". False when the text is not that, or
// is longer than kMaxElapsedSeconds.
bool parse_elapsed(std::string text, double& seconds) {
  double days = 0;
  if (const std::size_t comma = text.find(", "); comma != std::string::npos) {
    const std::string head = text.substr(0, comma);
    const std::size_t space = head.find(' ');
    std::int64_t d = 0;
    if (space == std::string::npos || !parse_number(head.substr(0, space), d) ||
        (head.substr(space + 1) != "day" && head.substr(space + 1) != "days"))
      return false;
    days = static_cast<double>(d);
    text = text.substr(comma + 2);
  }
  const std::size_t c1 = text.find(':'), c2 = c1 == std::string::npos ? c1 : text.find(':', c1 + 1);
  if (c2 == std::string::npos) return false;
  std::int64_t h = 0, m = 0;
  double s = 0;
  if (!parse_number(text.substr(0, c1), h) || !parse_number(text.substr(c1 + 1, c2 - c1 - 1), m) ||
      !parse_number(text.substr(c2 + 1), s) || h < 0 || m < 0 || m > 59 || !(s >= 0 && s < 60))
    return false;
  seconds = days * 86400.0 + static_cast<double>(h) * 3600.0 + static_cast<double>(m) * 60.0 + s;
  return seconds <= kMaxElapsedSeconds;
}

std::string radius_text(double radius) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", radius);
  return buf;
}

// The whole write of `text`, retried on EINTR and short writes.
void write_all(int fd, const std::string& text, const std::string& path) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w < 0 && errno == EINTR) continue;
    AEGIS_CHECK_AS(IoError, w > 0, path << ": write failed: " << std::strerror(errno));
    done += static_cast<std::size_t>(w);
  }
}

void sync_fd(int fd, const std::string& path) {
  AEGIS_CHECK_AS(IoError, ::fdatasync(fd) == 0, path << ": fdatasync failed: " << std::strerror(errno));
}

}  // namespace

// ---- rows ------------------------------------------------------------------------------------

SweepRow sweep_row(std::int64_t idx, std::int64_t label, const Certificate& certificate, double seconds) {
  SweepRow row;
  row.idx = idx;
  row.label = label;
  row.predict = certificate.prediction < 0 ? -1 : certificate.prediction;
  row.radius = row.predict < 0 ? 0.0 : certificate.radius;
  row.correct = row.predict == row.label;
  row.seconds = seconds;
  return row;
}

bool same_result(const SweepRow& a, const SweepRow& b) {
  return a.idx == b.idx && a.label == b.label && a.predict == b.predict && a.correct == b.correct &&
         radius_text(a.radius) == radius_text(b.radius);
}

std::string format_elapsed(double seconds) {
  // Clamped to [0, kMaxElapsedSeconds] (NaN: 0): past ~2.9e5 years seconds·10^6 overflows a long
  // long (and llround's result is then unspecified), which printed an unparsable
  // "-2562047788:00:-54.-775808". Whole seconds and microseconds apart, so that a long time keeps
  // its microseconds.
  const double clamped = seconds > 0 ? std::min(seconds, kMaxElapsedSeconds) : 0.0;
  double whole = std::floor(clamped);
  long long us = std::llround((clamped - whole) * 1e6);
  if (us == 1000000) {
    whole += 1;
    us = 0;
  }
  const auto s = static_cast<long long>(whole);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld.%06lld", s / 3600, s / 60 % 60, s % 60, us);
  return buf;
}

std::string format_row(const SweepRow& row) {
  return std::to_string(row.idx) + "\t" + std::to_string(row.label) + "\t" + std::to_string(row.predict) + "\t" +
         radius_text(row.radius) + "\t" + (row.correct ? "1" : "0") + "\t" + format_elapsed(row.seconds) + "\n";
}

SweepRow parse_row(const std::string& line, const std::string& where) {
  const std::vector<std::string> f = split_tabs(line);
  AEGIS_CHECK_AS(IoError, f.size() == 6,
                 where << ": expected 6 tab-separated columns (idx label predict radius correct time), found "
                       << f.size() << " in '" << line << "'");
  SweepRow r;
  AEGIS_CHECK_AS(IoError, parse_number(f[0], r.idx) && r.idx >= 0,
                 where << ": idx '" << f[0] << "' is not an index ≥ 0");
  AEGIS_CHECK_AS(IoError, parse_number(f[1], r.label) && r.label >= 0,
                 where << ": label '" << f[1] << "' is not a class ≥ 0");
  AEGIS_CHECK_AS(IoError, parse_number(f[2], r.predict) && r.predict >= -1,
                 where << ": predict '" << f[2] << "' is not a class or -1 (abstain)");
  AEGIS_CHECK_AS(IoError, parse_number(f[3], r.radius) && std::isfinite(r.radius) && r.radius >= 0,
                 where << ": radius '" << f[3] << "' is not a finite number ≥ 0");
  AEGIS_CHECK_AS(IoError, f[4] == "0" || f[4] == "1", where << ": correct '" << f[4] << "' is not 0 or 1");
  r.correct = f[4] == "1";
  AEGIS_CHECK_AS(IoError, r.correct == (r.predict == r.label),
                 where << ": correct " << f[4] << " contradicts predict " << r.predict << " and label " << r.label);
  AEGIS_CHECK_AS(IoError, parse_elapsed(f[5], r.seconds), where << ": time '" << f[5] << "' is not h:mm:ss[.ffffff]");
  return r;
}

SweepTsv read_sweep_tsv(const std::string& path, bool drop_partial_tail) {
  std::ifstream in(path, std::ios::binary);
  AEGIS_CHECK_AS(IoError, in.good(), path << ": cannot open: " << std::strerror(errno));
  // A device or a pipe (/dev/zero) would be read without end: sweeps are regular files.
  struct stat st {};
  AEGIS_CHECK_AS(IoError, ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode), path << ": not a regular file");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  AEGIS_CHECK_AS(IoError, !in.bad(), path << ": read failed");
  SweepTsv out;
  const std::size_t last_newline = text.rfind('\n');
  out.complete_bytes = last_newline == std::string::npos ? 0 : last_newline + 1;
  if (last_newline == std::string::npos && drop_partial_tail &&
      std::string(kSweepHeader).compare(0, text.size(), text) == 0) {
    out.header_only_prefix = true;  // a kill during the header's write (or an empty file)
    return out;
  }
  AEGIS_CHECK_AS(IoError, !text.empty(), path << ": empty file, expected the header line '" << kSweepHeader << "'");
  std::size_t start = 0;
  for (std::int64_t line_no = 1; start < text.size(); ++line_no) {
    const std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos && drop_partial_tail && line_no > 1) {
      out.partial_tail = true;
      break;
    }
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    start = nl == std::string::npos ? text.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = path + ":" + std::to_string(line_no);
    if (line_no == 1) {
      AEGIS_CHECK_AS(IoError, line == kSweepHeader,
                     where << ": not a certification sweep header (expected the tab-separated columns idx, label, "
                              "predict, radius, correct, time), found '"
                           << line << "'");
      continue;
    }
    if (line.empty()) continue;
    out.rows.push_back(parse_row(line, where));
  }
  return out;
}

// ---- the file being written ------------------------------------------------------------------

SweepFile::SweepFile(std::string path, const SweepSettings& settings, OpenMode mode) : m_path(std::move(path)) {
  check_sweep_settings(settings);
  struct stat st {};
  const bool nonempty = ::stat(m_path.c_str(), &st) == 0 && st.st_size > 0;
  AEGIS_CHECK(mode != OpenMode::Create || !nonempty,
              m_path << " already exists and is not empty: pass --resume to continue that sweep or --force to "
                        "overwrite it");
  m_fd = ::open(m_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  AEGIS_CHECK_AS(IoError, m_fd >= 0, m_path << ": cannot open for writing: " << std::strerror(errno));
  try {
    // One writer per file: two processes on one file (a shard started twice) would interleave
    // rows. The lock goes away with its process, even on SIGKILL.
    AEGIS_CHECK_AS(IoError, ::flock(m_fd, LOCK_EX | LOCK_NB) == 0,
                   m_path << " is being written by another process (its lock is held): " << std::strerror(errno));
    if (mode == OpenMode::Resume && nonempty)
      resume_existing(settings);
    else
      start_new(settings);
  } catch (...) {
    ::close(m_fd);
    m_fd = -1;
    throw;
  }
}

void SweepFile::resume_existing(const SweepSettings& settings) {
  AEGIS_CHECK_AS(IoError, has_settings(m_path),
                 "cannot resume " << m_path << ": its settings file " << settings_path(m_path)
                                  << " is missing, so the settings cannot be checked");
  const SweepSettings stored = read_settings(m_path);
  const std::string diff = settings_difference(settings, stored, false);
  AEGIS_CHECK(diff.empty(), "cannot resume " << m_path << " with other settings than it was started with (" << diff
                                             << " in " << settings_path(m_path)
                                             << "); pass the same settings or start a new file");
  std::ostringstream how;
  if (stored.smoothing.batch > 0 && settings.smoothing.batch > 0 && stored.smoothing.batch != settings.smoothing.batch)
    how << "batch " << settings.smoothing.batch << " (started with " << stored.smoothing.batch << ")";
  if (!stored.device.empty() && !settings.device.empty() && stored.device != settings.device)
    how << (how.tellp() > 0 ? ", " : "") << "device " << settings.device << " (started on " << stored.device << ")";
  if (how.tellp() > 0)
    m_resume_warning = "resuming " + m_path + " with " + how.str() +
                       ": the certificates stay valid, but the forward pass rounds differently, so a near-tie may "
                       "come out differently than in one uninterrupted run";
  const SweepTsv tsv = read_sweep_tsv(m_path, true);
  if (tsv.partial_tail || tsv.header_only_prefix) {
    // A kill mid-write left a partial line: cut the file back to its last complete line.
    AEGIS_CHECK_AS(IoError, ::ftruncate(m_fd, static_cast<off_t>(tsv.complete_bytes)) == 0,
                   m_path << ": cannot truncate: " << std::strerror(errno));
    if (tsv.header_only_prefix) write_all(m_fd, std::string(kSweepHeader) + "\n", m_path);
    sync_fd(m_fd, m_path);
  }
  // Earlier rows must be rows these settings can produce: a prediction among the model's classes
  // and a radius no larger than the largest certifiable one, σ·Φ⁻¹ of the Clopper–Pearson bound
  // with all n votes for the top class (Cohen et al. 2019, Thm 1 and Alg. 2). Rows hold radii
  // rounded to 6 significant digits, hence the relative slack.
  const SmoothingOptions& o = stored.smoothing;
  const double max_radius = o.sigma * normal_quantile(clopper_pearson_lower(o.n, o.n, o.alpha));
  for (const SweepRow& row : tsv.rows) {
    AEGIS_CHECK_AS(IoError, settings.num_classes <= 0 || row.predict < settings.num_classes,
                   m_path << ": idx " << row.idx << " predicts class " << row.predict << " but the model has "
                          << settings.num_classes << " classes");
    AEGIS_CHECK_AS(IoError, row.radius <= max_radius * (1.0 + 1e-5),
                   m_path << ": idx " << row.idx << " has radius " << row.radius << ", above the largest that σ "
                          << o.sigma << ", n " << o.n << " and α " << o.alpha << " certify ("
                          << max_radius << ")");
    AEGIS_CHECK_AS(IoError, m_done.insert(row.idx).second, m_path << ": idx " << row.idx << " appears twice");
    m_rows.push_back(row);
  }
  m_resumed = static_cast<std::int64_t>(m_rows.size());
}

void SweepFile::start_new(const SweepSettings& settings) {
  // Truncate first, then write the settings: a kill in between leaves an empty file, which
  // resuming treats as new, never old rows under new settings.
  AEGIS_CHECK_AS(IoError, ::ftruncate(m_fd, 0) == 0, m_path << ": cannot truncate: " << std::strerror(errno));
  write_settings(m_path, settings);
  write_all(m_fd, std::string(kSweepHeader) + "\n", m_path);
  sync_fd(m_fd, m_path);
}

SweepFile::~SweepFile() {
  if (m_fd >= 0) ::close(m_fd);
}

void SweepFile::append(const SweepRow& row) {
  AEGIS_CHECK(!contains(row.idx), "idx " << row.idx << " is already in " << m_path);
  // A failed write (a full disk) may have written part of the row: cut the file back to its last
  // whole row before reporting, so that it stays a valid sweep without a torn line.
  const off_t end = ::lseek(m_fd, 0, SEEK_END);
  AEGIS_CHECK_AS(IoError, end >= 0, m_path << ": cannot find the end of the file: " << std::strerror(errno));
  const std::string line = format_row(row);
  try {
    write_all(m_fd, line, m_path);
  } catch (const IoError&) {
    if (::ftruncate(m_fd, end) != 0) {
      // The torn row stays; resuming cuts a partial last line anyway.
    }
    throw;
  }
  sync_fd(m_fd, m_path);
  // Kept as the file holds it (radius to 6 digits), as resumed rows are, so numbers computed
  // from rows() equal those `aegis analyze` computes from the file.
  m_rows.push_back(parse_row(line.substr(0, line.size() - 1), m_path));
  m_done.insert(row.idx);
}

// ---- the sweep -------------------------------------------------------------------------------

std::int64_t chunk_size(std::int64_t batch, std::int64_t n0, std::int64_t n) {
  AEGIS_CHECK(batch >= 1, "batch " << batch << " must be ≥ 1");
  AEGIS_CHECK(n0 >= 1 && n >= 1, "n0 " << n0 << " and n " << n << " must be ≥ 1");
  return std::max<std::int64_t>(1, std::min<std::int64_t>(64, batch / (n0 + n)));
}

SweepSummary run_sweep(SweepFile& file, const std::vector<SweepInput>& inputs, std::int64_t chunk,
                       const ChunkCertifier& certify, const std::function<void(std::int64_t)>& on_chunk) {
  AEGIS_CHECK(chunk >= 1, "chunk " << chunk << " must be ≥ 1");
  check_file_rows(file, inputs);
  // Chunks are fixed slices of `inputs`, the same in every run: a resumed sweep feeds the model the
  // same batches as an uninterrupted one, so even float rounding in the forward pass cannot tell
  // them apart. A chunk cut short by a kill is certified again whole (at most one forward batch
  // of work when chunks hold several inputs) and only its missing rows are written.
  const auto start = std::chrono::steady_clock::now();
  SweepSummary s;
  s.resumed = file.resumed_rows();
  for (std::size_t b = 0; b < inputs.size(); b += static_cast<std::size_t>(chunk)) {
    const std::size_t e = std::min(inputs.size(), b + static_cast<std::size_t>(chunk));
    std::vector<std::int64_t> ids;
    bool missing = false;
    for (std::size_t i = b; i < e; ++i) {
      ids.push_back(inputs[i].idx);
      missing = missing || !file.contains(inputs[i].idx);
    }
    if (!missing) continue;
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<Certificate> certs = certify(ids);
    const double per_input =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(e - b);
    s.written += append_chunk(
        file, {inputs.begin() + static_cast<std::ptrdiff_t>(b), inputs.begin() + static_cast<std::ptrdiff_t>(e)}, certs,
        per_input);
    if (on_chunk) on_chunk(static_cast<std::int64_t>(file.rows().size()));
  }
  finish_summary(file, start, s);
  return s;
}

void check_file_rows(const SweepFile& file, const std::vector<SweepInput>& inputs) {
  std::unordered_map<std::int64_t, std::int64_t> label_of;
  for (const SweepInput& in : inputs)
    AEGIS_CHECK(label_of.emplace(in.idx, in.label).second, "input idx " << in.idx << " is listed twice");
  for (const SweepRow& row : file.rows()) {
    const auto it = label_of.find(row.idx);
    AEGIS_CHECK_AS(IoError, it != label_of.end(),
                   file.path() << " holds idx " << row.idx
                               << ", which is not an input of this sweep (other --skip, --max, --shard or data?)");
    AEGIS_CHECK_AS(
        IoError, it->second == row.label,
        file.path() << ": idx " << row.idx << " has label " << row.label << " but the dataset says " << it->second);
  }
}

std::int64_t append_chunk(SweepFile& file, const std::vector<SweepInput>& chunk, const std::vector<Certificate>& certs,
                          double seconds_per_input) {
  AEGIS_CHECK(certs.size() == chunk.size(),
              "certifier returned " << certs.size() << " certificates for " << chunk.size() << " inputs");
  std::int64_t written = 0;
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    if (file.contains(chunk[i].idx)) continue;
    const Certificate& c = certs[i];
    AEGIS_CHECK_AS(NumericError, std::isfinite(c.radius) && c.radius >= 0,
                   "certificate of idx " << chunk[i].idx << " has radius " << c.radius);
    file.append(sweep_row(chunk[i].idx, chunk[i].label, c, seconds_per_input));
    ++written;
  }
  return written;
}

void finish_summary(const SweepFile& file, std::chrono::steady_clock::time_point start, SweepSummary& s) {
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  s.inputs = static_cast<std::int64_t>(file.rows().size());
  for (const SweepRow& row : file.rows()) {
    s.correct += row.correct;
    s.abstained += row.predict < 0;
  }
}

}  // namespace aegis::certify
