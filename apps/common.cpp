#include <cstdlib>
#include <iostream>

#include "commands.h"
#include "core/error.h"

namespace aegis::app {

void add_common_options(CLI::App& cmd, CommonOptions& o) {
  cmd.add_option("--device", o.device, "cpu | cuda | cuda:N | auto (a GPU when one is usable)")->capture_default_str();
  cmd.add_option("--data-dir", o.data_dir, "directory holding the bundled datasets (found automatically)");
  cmd.add_flag("--json", o.json, "print one JSON object with the results on stdout");
  cmd.add_flag("--quiet", o.quiet, "no progress output on stderr");
}

Device resolve_device(const CommonOptions& o) {
  const DeviceChoice c = choose_device(o.device);
  if (c.fell_back && !o.quiet) std::cerr << "aegis: running on the CPU (" << c.reason << ")\n";
  return c.device;
}

std::string data_dir_hint(const CommonOptions& o) {
  if (!o.data_dir.empty()) return o.data_dir;
  if (const char* env = std::getenv("AEGIS_DATA_DIR"); env && *env) return env;
  return std::string(AEGIS_SOURCE_DIR) + "/data";
}

int print_result(const nlohmann::json& result, bool json, const std::function<void(const nlohmann::json&)>& text) {
  if (json) {
    std::cout << result.dump() << std::endl;
  } else {
    text(result);
  }
  return 0;
}

}  // namespace aegis::app
