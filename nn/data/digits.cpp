// The bundled dataset: UCI "Optical Recognition of Handwritten Digits" (Alpaydin & Kaynak 1998),
// 8×8 images whose pixels count the set pixels in 4×4 blocks of a 32×32 bitmap (0..16). The file
// is gzip-compressed CSV: per line 64 pixel values row by row, then the label.
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "nn/data/dataset.h"

namespace aegis::nn {
namespace {

constexpr std::int64_t kSide = 8;
constexpr std::int64_t kPixels = kSide * kSide;
constexpr int kMaxPixel = 16;
constexpr std::int64_t kClasses = 10;
const char* const kDigitsFile = "digits/digits.csv.gz";

// The directory that holds the running executable, or "" when /proc is unavailable.
std::string executable_dir() {
  char buf[PATH_MAX];
  const ssize_t len = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (len <= 0) return "";
  std::string path(buf, static_cast<std::size_t>(len));
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

// Parses one CSV line into 65 integers; throws IoError naming the file and line otherwise.
void parse_line(const std::string& line, std::size_t line_no, const std::string& path, int (&fields)[kPixels + 1]) {
  const char* p = line.c_str();
  for (std::int64_t f = 0; f <= kPixels; ++f) {
    char* end = nullptr;
    const long v = std::strtol(p, &end, 10);
    if (end == p)
      AEGIS_THROW(IoError, path << ": line " << line_no << ": field " << f + 1 << " is not an integer (expected "
                                << kPixels + 1 << " comma-separated integers)");
    const bool last = f == kPixels;
    const int lo = 0, hi = last ? static_cast<int>(kClasses - 1) : kMaxPixel;
    if (v < lo || v > hi)
      AEGIS_THROW(IoError, path << ": line " << line_no << ": " << (last ? "label " : "pixel ") << v << " in field "
                                << f + 1 << " is outside " << lo << ".." << hi);
    fields[f] = static_cast<int>(v);
    p = end;
    if (!last) {
      if (*p != ',')
        AEGIS_THROW(IoError,
                    path << ": line " << line_no << ": expected " << kPixels + 1 << " fields, found " << f + 1);
      ++p;
    }
  }
  while (*p == '\r' || *p == ' ') ++p;
  if (*p != '\0') AEGIS_THROW(IoError, path << ": line " << line_no << ": more than " << kPixels + 1 << " fields");
}

Dataset make_dataset(const std::vector<float>& pixels, const std::vector<std::int32_t>& labels, std::int64_t begin,
                     std::int64_t count) {
  Dataset ds;
  ds.name = "digits";
  ds.num_classes = kClasses;
  const auto first = static_cast<std::ptrdiff_t>(begin);
  const auto last = static_cast<std::ptrdiff_t>(begin + count);
  ds.images = Tensor::from_vector(std::vector<float>(pixels.begin() + first * kPixels, pixels.begin() + last * kPixels),
                                  {count, 1, kSide, kSide});
  ds.labels = Tensor::from_vector(std::vector<std::int32_t>(labels.begin() + first, labels.begin() + last), {count});
  return ds;
}

}  // namespace

std::string find_bundled_data_dir(const std::string& hint) {
  std::vector<std::pair<std::string, std::string>> candidates;  // (directory, where it came from)
  if (!hint.empty()) candidates.emplace_back(hint, "data directory argument");
  if (const char* env = std::getenv("AEGIS_DATA_DIR"); env && *env) candidates.emplace_back(env, "AEGIS_DATA_DIR");
  if (const std::string exe = executable_dir(); !exe.empty())
    candidates.emplace_back(exe + "/../share/aegis", "install location beside the executable");
  candidates.emplace_back("/usr/local/share/aegis", "install location");
  candidates.emplace_back("/usr/share/aegis", "install location");
  std::string looked;
  for (const auto& [dir, origin] : candidates) {
    if (detail::file_exists(dir + "/" + kDigitsFile)) return dir;
    looked += "\n  " + dir + "/" + kDigitsFile + " (" + origin + ")";
  }
  AEGIS_THROW(IoError, "the bundled dataset file "
                           << kDigitsFile << " was not found; looked at:" << looked
                           << (std::getenv("AEGIS_DATA_DIR") ? "" : "\n  (AEGIS_DATA_DIR is not set)")
                           << "\nset AEGIS_DATA_DIR to the aegis data/ directory");
}

DatasetSplit load_digits(const std::string& data_dir) {
  const std::string path = data_dir + "/" + kDigitsFile;
  if (!detail::file_exists(path)) AEGIS_THROW(IoError, path << ": bundled digits file not found");
  const std::vector<unsigned char> bytes = detail::read_file_bytes(path);
  std::vector<float> pixels;
  std::vector<std::int32_t> labels;
  pixels.reserve(static_cast<std::size_t>(kDigitsExamples * kPixels));
  labels.reserve(static_cast<std::size_t>(kDigitsExamples));
  int fields[kPixels + 1];
  std::size_t line_no = 0;
  std::size_t start = 0;
  while (start < bytes.size()) {
    std::size_t end = start;
    while (end < bytes.size() && bytes[end] != '\n') ++end;
    ++line_no;
    const std::string line(bytes.begin() + static_cast<std::ptrdiff_t>(start),
                           bytes.begin() + static_cast<std::ptrdiff_t>(end));
    start = end + 1;
    if (line.empty() || line == "\r") continue;
    parse_line(line, line_no, path, fields);
    for (std::int64_t i = 0; i < kPixels; ++i) pixels.push_back(static_cast<float>(fields[i]) / kMaxPixel);
    labels.push_back(fields[kPixels]);
  }
  const auto n = static_cast<std::int64_t>(labels.size());
  if (n != kDigitsExamples)
    AEGIS_THROW(IoError, path << ": holds " << n << " examples, the bundled digits set has " << kDigitsExamples
                              << " (the file is damaged or was replaced)");
  DatasetSplit split;
  split.train = make_dataset(pixels, labels, 0, n - kDigitsTestExamples);
  split.test = make_dataset(pixels, labels, n - kDigitsTestExamples, kDigitsTestExamples);
  return split;
}

}  // namespace aegis::nn
