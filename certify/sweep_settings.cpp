// The settings side of a sweep (certify/sweep.h): which inputs it certifies (--skip, --max,
// --shard), the settings sidecar <file>.json and its comparison, the model fingerprint, and the
// per-σ file names.
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <type_traits>

#include "certify/sweep.h"
#include "core/atomic_file.h"
#include "core/error.h"

namespace aegis::certify {

namespace {

// A settings sidecar is a few hundred bytes; anything past this is not one.
constexpr off_t kMaxSettingsBytes = 1 << 20;

bool parse_int(const std::string& text, std::int64_t& out) {
  const char* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, out);
  return !text.empty() && r.ec == std::errc() && r.ptr == end;
}

template <class T>
T json_field(const nlohmann::json& j, const char* key, const std::string& where) {
  AEGIS_CHECK_AS(IoError, j.contains(key), where << ": missing setting '" << key << "'");
  const nlohmann::json& v = j.at(key);
  // nlohmann converts between number kinds silently (1.5 → 1, −1 → 2^64 − 1): counts must be
  // written as integers, seeds as unsigned ones.
  bool fits = true;
  if constexpr (std::is_same_v<T, std::uint64_t>)
    fits = v.is_number_unsigned();
  else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
    fits = v.is_number_integer();
  else if constexpr (std::is_floating_point_v<T>)
    fits = v.is_number();
  AEGIS_CHECK_AS(IoError, fits, where << ": setting '" << key << "' has the wrong type (" << v.dump() << ")");
  try {
    return v.get<T>();
  } catch (const nlohmann::json::exception&) {
    AEGIS_THROW(IoError, where << ": setting '" << key << "' has the wrong type (" << v.dump() << ")");
  }
}

// The field when present (IoError when it has the wrong type), else `fallback`.
template <class T>
T json_field_or(const nlohmann::json& j, const char* key, const T& fallback, const std::string& where) {
  return j.contains(key) ? json_field<T>(j, key, where) : fallback;
}

}  // namespace

// ---- which inputs ----------------------------------------------------------------------------

Shard parse_shard(const std::string& text) {
  const std::size_t slash = text.find('/');
  Shard s;
  const bool ok = slash != std::string::npos && parse_int(text.substr(0, slash), s.index) &&
                  parse_int(text.substr(slash + 1), s.count) && s.count >= 1 && s.index >= 0 && s.index < s.count;
  AEGIS_CHECK(ok, "shard '" << text << "' must be i/k with 0 ≤ i < k (0-based), e.g. 0/4");
  return s;
}

void check_input_selection(const InputSelection& selection) {
  AEGIS_CHECK(selection.skip >= 1, "skip " << selection.skip << " must be ≥ 1");
  AEGIS_CHECK(selection.max >= 0, "max " << selection.max << " must be ≥ 0 (0: all)");
  const Shard& shard = selection.shard;
  AEGIS_CHECK(shard.count >= 1 && shard.index >= 0 && shard.index < shard.count,
              "shard " << shard.index << "/" << shard.count << " must have 0 ≤ i < k");
}

std::vector<std::int64_t> select_inputs(std::int64_t dataset_size, const InputSelection& selection) {
  AEGIS_CHECK(dataset_size >= 0, "dataset size " << dataset_size << " must be ≥ 0");
  check_input_selection(selection);
  const std::int64_t end = selection.max > 0 ? std::min(selection.max, dataset_size) : dataset_size;
  std::vector<std::int64_t> idx;
  std::int64_t position = 0;
  for (std::int64_t i = 0; i < end; i += selection.skip, ++position)
    if (position % selection.shard.count == selection.shard.index) idx.push_back(i);
  return idx;
}

std::vector<std::int64_t> select_inputs(std::int64_t dataset_size, std::int64_t skip, std::int64_t max,
                                        const Shard& shard) {
  return select_inputs(dataset_size, InputSelection{skip, max, shard});
}

// ---- settings sidecar ------------------------------------------------------------------------

void check_sweep_settings(const SweepSettings& s) {
  SmoothingOptions smoothing = s.smoothing;
  if (smoothing.batch == 0) smoothing.batch = 1;  // not recorded by sidecars older than the batch
  check_smoothing_options(smoothing);
  check_input_selection(s.inputs);
}

std::string settings_path(const std::string& tsv_path) {
  return tsv_path + ".json";
}

bool has_settings(const std::string& tsv_path) {
  struct stat st {};
  return ::stat(settings_path(tsv_path).c_str(), &st) == 0;
}

void write_settings(const std::string& tsv_path, const SweepSettings& s) {
  const nlohmann::json j{{"format", "aegis-certify-sweep"},
                         {"version", 1},
                         {"sigma", s.smoothing.sigma},
                         {"n0", s.smoothing.n0},
                         {"n", s.smoothing.n},
                         {"alpha", s.smoothing.alpha},
                         {"seed", s.smoothing.seed},
                         {"model", s.model},
                         {"model_fingerprint", s.model_fingerprint},
                         {"data", s.data},
                         {"skip", s.inputs.skip},
                         {"max", s.inputs.max},
                         {"shard", std::to_string(s.inputs.shard.index) + "/" + std::to_string(s.inputs.shard.count)},
                         {"precision", math_precision_name(s.smoothing.precision)},
                         {"batch", s.smoothing.batch},
                         {"device", s.device}};
  const std::string text = j.dump(2) + "\n";
  write_file_atomically(settings_path(tsv_path), [&](int fd) { return write_fully(fd, text.data(), text.size()); });
}

SweepSettings read_settings(const std::string& tsv_path) {
  const std::string path = settings_path(tsv_path);
  std::ifstream in(path, std::ios::binary);
  AEGIS_CHECK_AS(IoError, in.good(), path << ": cannot open the sweep's settings file: " << std::strerror(errno));
  struct stat st {};
  AEGIS_CHECK_AS(IoError, ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= kMaxSettingsBytes,
                 path << ": not a regular file of at most " << kMaxSettingsBytes << " bytes");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  AEGIS_CHECK_AS(IoError, !j.is_discarded() && j.is_object(), path << ": not a JSON object");
  AEGIS_CHECK_AS(IoError, json_field_or<std::string>(j, "format", "", path) == "aegis-certify-sweep",
                 path << ": not an aegis certification settings file (\"format\" is not \"aegis-certify-sweep\")");
  SweepSettings s;
  s.smoothing.sigma = json_field<double>(j, "sigma", path);
  s.smoothing.n0 = json_field<std::int64_t>(j, "n0", path);
  s.smoothing.n = json_field<std::int64_t>(j, "n", path);
  s.smoothing.alpha = json_field<double>(j, "alpha", path);
  s.smoothing.seed = json_field<std::uint64_t>(j, "seed", path);
  s.model = json_field<std::string>(j, "model", path);
  s.model_fingerprint = json_field<std::string>(j, "model_fingerprint", path);
  s.data = json_field<std::string>(j, "data", path);
  s.inputs.skip = json_field<std::int64_t>(j, "skip", path);
  s.inputs.max = json_field<std::int64_t>(j, "max", path);
  const std::string shard = json_field<std::string>(j, "shard", path);
  // "precision" since bf16/fp16 exist; older files say "tensor_cores": true for TF32 sweeps and
  // nothing for fp32 ones.
  if (j.contains("precision")) {
    const std::string precision = json_field<std::string>(j, "precision", path);
    try {
      s.smoothing.precision = parse_math_precision(precision);
    } catch (const InvalidArgument& e) {
      AEGIS_THROW(IoError, path << ": setting 'precision': " << e.what());
    }
  } else {
    s.smoothing.precision = json_field_or(j, "tensor_cores", false, path) ? MathPrecision::Tf32 : MathPrecision::Fp32;
  }
  s.smoothing.batch = json_field_or<std::int64_t>(j, "batch", 0, path);
  s.device = json_field_or<std::string>(j, "device", "", path);
  try {
    s.inputs.shard = parse_shard(shard);
    check_sweep_settings(s);
  } catch (const InvalidArgument& e) {
    AEGIS_THROW(IoError, path << ": " << e.what());
  }
  return s;
}

std::string settings_difference(const SweepSettings& a, const SweepSettings& b, bool ignore_shard_index) {
  const SmoothingOptions &x = a.smoothing, &y = b.smoothing;
  const InputSelection &p = a.inputs, &q = b.inputs;
  std::ostringstream d;
  d << std::setprecision(17);
  if (x.sigma != y.sigma)
    d << "sigma " << x.sigma << " vs " << y.sigma;
  else if (x.n0 != y.n0)
    d << "n0 " << x.n0 << " vs " << y.n0;
  else if (x.n != y.n)
    d << "n " << x.n << " vs " << y.n;
  else if (x.alpha != y.alpha)
    d << "alpha " << x.alpha << " vs " << y.alpha;
  else if (x.seed != y.seed)
    d << "seed " << x.seed << " vs " << y.seed;
  else if (a.model_fingerprint != b.model_fingerprint)
    d << "model " << a.model << " (" << a.model_fingerprint << ") vs " << b.model << " (" << b.model_fingerprint << ")";
  else if (a.data != b.data)
    d << "data '" << a.data << "' vs '" << b.data << "'";
  else if (p.skip != q.skip)
    d << "skip " << p.skip << " vs " << q.skip;
  else if (p.max != q.max)
    d << "max " << p.max << " vs " << q.max;
  else if (x.precision != y.precision)
    d << "precision " << math_precision_name(x.precision) << " vs " << math_precision_name(y.precision);
  else if (p.shard.count != q.shard.count || (!ignore_shard_index && p.shard.index != q.shard.index))
    d << "shard " << p.shard.index << "/" << p.shard.count << " vs " << q.shard.index << "/" << q.shard.count;
  return d.str();
}

std::string file_fingerprint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  AEGIS_CHECK_AS(IoError, in.good(), path << ": cannot open: " << std::strerror(errno));
  std::uint64_t h = 14695981039346656037ULL;  // FNV-1a 64-bit offset basis
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof buf);
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 1099511628211ULL;  // FNV 64-bit prime
    }
  }
  AEGIS_CHECK_AS(IoError, !in.bad(), path << ": read failed");
  char out[40];
  std::snprintf(out, sizeof out, "fnv1a64:%016llx", static_cast<unsigned long long>(h));
  return out;
}

std::string sigma_out_path(const std::string& out, double sigma) {
  char tag[48];
  std::snprintf(tag, sizeof tag, "_sigma%g", sigma);
  const std::size_t slash = out.rfind('/'), dot = out.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == slash + 1) return out + tag;
  return out.substr(0, dot) + tag + out.substr(dot);
}

}  // namespace aegis::certify
