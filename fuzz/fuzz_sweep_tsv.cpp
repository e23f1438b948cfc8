// libFuzzer harness for the sweep TSV reader (certify/sweep.h): read_sweep_tsv, in both its
// resuming and its strict mode, and parse_row on every line of the input. Any bytes must either
// parse or throw aegis::Error; never crash or overflow. A row that parses must survive
// format_row → parse_row unchanged (same_result), since resuming and `aegis analyze` read back what
// `aegis certify` wrote.
//
//   bash tools/fuzz.sh -t 60 sweep_tsv   # once the test command or the sanitizer job has built build-asan/
#include <cstddef>
#include <cstdint>
#include <string>

#include "certify/sweep.h"
#include "core/error.h"
#include "fuzz_support.h"

namespace {

void check_round_trip(const aegis::certify::SweepRow& row) {
  using namespace aegis::certify;
  std::string line = format_row(row);
  line.pop_back();  // the newline
  try {
    if (!same_result(parse_row(line, "<formatted row>"), row))
      aegis::fuzz::property_violated("format_row -> parse_row changed the row");
  } catch (const aegis::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    aegis::fuzz::property_violated("parse_row refused a line that format_row wrote");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace aegis::certify;
  const std::string path = aegis::fuzz::scratch().file("sweep.tsv");
  aegis::fuzz::write_file(path, data, size);
  for (const bool drop_partial_tail : {true, false}) {
    try {
      const SweepTsv tsv = read_sweep_tsv(path, drop_partial_tail);
      if (tsv.complete_bytes > size) aegis::fuzz::property_violated("complete_bytes past the end of the file");
      for (const SweepRow& row : tsv.rows) check_round_trip(row);
    } catch (const aegis::Error&) {
      // Malformed input is expected to be refused.
    }
  }
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (std::size_t start = 0; start <= text.size();) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    try {
      check_round_trip(parse_row(text.substr(start, end - start), "<fuzz line>"));
    } catch (const aegis::Error&) {
    }
    start = end + 1;
  }
  return 0;
}
