// libFuzzer harness for `aegis analyze`'s reader (certify/analyze.h, analyze_sweeps): a sweep file
// and its settings sidecar, cut from one input by fuzz_support.h's split_two (the first part is the
// sidecar, none when empty; the second the TSV), analyzed alone and as two shards of one sweep,
// then summarized as the tool prints them (markdown_table, the plot's curves and words). Any bytes
// must either be summarized or throw aegis::Error; never crash, overflow or loop without bound.
// Accepted summaries must be fractions in [0, 1], and certified accuracy must not grow with the radius.
//
//   bash tools/fuzz.sh -t 60 analyze   # once the test command or the sanitizer job has built build-asan/
#include <cstddef>
#include <cstdint>
#include <string>

#include "certify/analyze.h"
#include "core/error.h"
#include "fuzz_support.h"

namespace {

void check(const aegis::certify::Analysis& analysis) {
  using aegis::fuzz::property_violated;
  for (const aegis::certify::SweepCurve& curve : analysis.curves) {
    if (curve.certified_accuracy.size() != analysis.radii.size()) property_violated("one accuracy per radius");
    for (std::size_t i = 0; i < curve.certified_accuracy.size(); ++i) {
      const double a = curve.certified_accuracy[i];
      if (!(a >= 0.0 && a <= 1.0)) property_violated("certified accuracy outside [0, 1]");
      if (i > 0 && analysis.radii[i] >= analysis.radii[i - 1] && a > curve.certified_accuracy[i - 1])
        property_violated("certified accuracy grows with the radius");
    }
    if (!(curve.acr >= 0.0) || !(curve.abstention_rate >= 0.0 && curve.abstention_rate <= 1.0) ||
        !(curve.clean_accuracy >= 0.0 && curve.clean_accuracy <= 1.0))
      property_violated("ACR, abstention or clean accuracy out of range");
    aegis::certify::accuracy_steps(curve);
  }
  aegis::certify::markdown_table(analysis);
  aegis::certify::envelope_steps(analysis.curves);
  aegis::certify::plot_text(analysis);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace aegis::certify;
  const aegis::fuzz::TwoParts parts = aegis::fuzz::split_two(data, size);
  const std::string tsv = aegis::fuzz::scratch().file("sweep.tsv");
  aegis::fuzz::write_file(tsv, parts.second, parts.second_size);
  if (parts.first_size > 0)
    aegis::fuzz::write_file(settings_path(tsv), parts.first, parts.first_size);
  else
    std::remove(settings_path(tsv).c_str());
  AnalyzeOptions options;
  options.envelope = true;
  try {
    check(analyze_sweeps({tsv}, options));
    check(analyze_sweeps({tsv, tsv}, options));
  } catch (const aegis::Error&) {
    // Malformed input is expected to be refused.
  }
  return 0;
}
