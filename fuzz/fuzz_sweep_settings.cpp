// libFuzzer harness for the sweep settings sidecar reader (certify/sweep.h, read_settings): any
// bytes in <sweep>.tsv.json must either give settings that pass check_sweep_settings or throw
// aegis::Error; never crash, overflow or let nlohmann::json's own exceptions escape. Settings that
// are read must survive write_settings → read_settings unchanged (settings_difference is empty),
// since resuming compares the sidecar with the command line's settings.
//
//   bash tools/fuzz.sh -t 60 sweep_settings   # once the test command or the sanitizer job has built build-asan/
#include <cstddef>
#include <cstdint>
#include <string>

#include "certify/sweep.h"
#include "core/error.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace aegis::certify;
  const std::string tsv = aegis::fuzz::scratch().file("sweep.tsv");
  aegis::fuzz::write_file(settings_path(tsv), data, size);
  SweepSettings settings;
  try {
    settings = read_settings(tsv);
  } catch (const aegis::Error&) {
    return 0;  // malformed input is expected to be refused
  }
  try {
    check_sweep_settings(settings);
    const std::string copy = aegis::fuzz::scratch().file("copy.tsv");
    write_settings(copy, settings);
    const SweepSettings again = read_settings(copy);
    if (!settings_difference(settings, again, false).empty() || again.model != settings.model ||
        again.smoothing.batch != settings.smoothing.batch || again.device != settings.device)
      aegis::fuzz::property_violated("write_settings -> read_settings changed the settings");
  } catch (const aegis::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    aegis::fuzz::property_violated("settings that were read could not be checked, written and read back");
  }
  return 0;
}
