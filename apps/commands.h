// The subcommands of the `aegis` tool. Each registers its options on a CLI11 subcommand and
// returns the function that runs it; main() catches aegis::Error and turns it into a message
// and exit status 1.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <functional>
#include <string>

#include "nn/data/dataset.h"
#include "nn/job.h"
#include "nn/zoo.h"
#include "core/device.h"

namespace aegis::app {

using Runner = std::function<int()>;

// Options every command that computes shares.
struct CommonOptions {
  std::string device = "auto";
  std::string data_dir;  // where the bundled dataset lives (default: found automatically)
  bool json = false;
  bool quiet = false;
};
void add_common_options(CLI::App& cmd, CommonOptions& o);
// Resolves --device; on `auto` without a GPU, says once on stderr that it runs on the CPU.
Device resolve_device(const CommonOptions& o);
// The hint passed to the bundled-data search: --data-dir, else the source tree's data/.
std::string data_dir_hint(const CommonOptions& o);
using nn::check_data_fits;
using nn::first_examples;

// The one printer of every command's result: with --json, the result's JSON object on one line on
// stdout; otherwise the text that `text` writes from the same object. Returns the exit status 0.
int print_result(const nlohmann::json& result, bool json, const std::function<void(const nlohmann::json&)>& text);

Runner add_info(CLI::App& app);
Runner add_train(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_report(CLI::App& app);
Runner add_demo(CLI::App& app);
Runner add_account(CLI::App& app);
Runner add_attack(CLI::App& app);
Runner add_pixeldp(CLI::App& app);
Runner add_verify(CLI::App& app);
Runner add_certify(CLI::App& app);
Runner add_analyze(CLI::App& app);
Runner add_audit(CLI::App& app);

}  // namespace aegis::app
