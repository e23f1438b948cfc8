#include <cstdlib>
#include <iostream>

#include "commands.h"
#include "core/error.h"

namespace aegis::app {

void add_common_options(CLI::App& cmd, CommonOptions& o) {
  cmd.add_option("--device", o.device, "cpu | cuda | cuda:N | auto (a GPU when one is usable)")
      ->capture_default_str();
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

void check_data_fits(const nn::Dataset& data, const nn::ModelSpec& spec, const std::string& model_file,
                     const std::string& data_spec) {
  const Shape& s = data.images.shape();
  const Shape example{s[1], s[2], s[3]};
  AEGIS_CHECK(example == spec.input_shape, "model " << model_file << " takes inputs " << shape_str(spec.input_shape)
                                                    << " but dataset '" << data_spec << "' has "
                                                    << shape_str(example));
  AEGIS_CHECK(data.num_classes == spec.num_classes, "model " << model_file << " has " << spec.num_classes
                                                             << " classes but dataset '" << data_spec << "' has "
                                                             << data.num_classes);
}

nn::Dataset first_examples(const nn::Dataset& data, std::int64_t max) {
  return max > 0 && max < data.size() ? nn::take(data, 0, max) : data;
}

}  // namespace aegis::app
