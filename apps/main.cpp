// aegis — command-line front end. `aegis --help` lists the commands.
#include <iostream>
#include <map>
#include <new>
#include <string>

#include "commands.h"
#include "core/error.h"
#include "core/mpi.h"

namespace {
// CLI11 messages may span lines (a list of unexpected arguments); the contract is one line.
std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"aegis " AEGIS_VERSION " — private and robust deep learning (DP-SGD, attacks, certification)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "aegis " AEGIS_VERSION);
  // Options of the tool itself, accepted before or after the command (fallthrough).
  bool verbose = false;
  app.add_flag("--verbose", verbose, "error messages also name the source location that raised them");
  // Commands with progress output have their own --quiet (apps/common.cpp); the rest (account,
  // analyze, info, report) print no progress, and accept it here so that one flag works everywhere.
  bool quiet = false;
  app.add_flag("--quiet", quiet, "no progress output on stderr");
  app.fallthrough();
  std::map<CLI::App*, aegis::app::Runner> runners;
  auto reg = [&](aegis::app::Runner (*add)(CLI::App&)) {
    const std::size_t before = app.get_subcommands({}).size();
    aegis::app::Runner r = add(app);
    runners[app.get_subcommands({})[before]] = std::move(r);
  };
  reg(aegis::app::add_info);
  reg(aegis::app::add_train);
  reg(aegis::app::add_eval);
  reg(aegis::app::add_report);
  reg(aegis::app::add_demo);
  reg(aegis::app::add_account);
  reg(aegis::app::add_attack);
  reg(aegis::app::add_pixeldp);
  reg(aegis::app::add_verify);
  reg(aegis::app::add_certify);
  reg(aegis::app::add_analyze);
  reg(aegis::app::add_audit);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end parsing with a "success" whose exit code is 0: CLI11 prints them.
    if (e.get_exit_code() == 0) return app.exit(e);
    // Every other parse error follows the error contract: one line, exit status 1.
    std::cerr << "aegis: error: " << one_line(e.what()) << "\n";
    return 1;
  }
  // Under mpirun a failing rank ends the whole run (the others would wait for it forever); a rank
  // other than 0 names itself in its error line. Without MPI, abort_run returns and so do we.
  const auto fail = [](const std::string& kind, const std::string& message, int status) {
    const aegis::mpi::World& world = aegis::mpi::world();
    const std::string rank = world.size > 1 && world.rank != 0 ? "rank " + std::to_string(world.rank) + ": " : "";
    // One write: mpirun forwards each rank's stderr, and lines written piecewise would interleave.
    std::cerr << "aegis: " + kind + ": " + rank + message + "\n";
    aegis::mpi::abort_run(status);
    return status;
  };
  try {
    for (auto& [cmd, run] : runners)
      if (cmd->parsed()) {
        // Under mpirun, certify, train and the audits' model farms (audit mia, audit dp --runs)
        // share the work; any other command would run K times.
        std::string name = cmd->get_name();
        for (const CLI::App* sub : cmd->get_subcommands()) name += " " + sub->get_name();
        if (aegis::mpi::launched_by_launcher() && aegis::mpi::world().size > 1 && name != "info" && name != "certify" &&
            name != "train" && name != "audit mia" && name != "audit dp")
          throw aegis::InvalidArgument("aegis " + name + " runs in one process; under mpirun only certify, train, " +
                                       "audit mia and audit dp --runs share their work over the ranks");
        return run();
      }
  } catch (const aegis::Error& e) {
    // A user's bad input gets the message; the source location is for --verbose (and bug reports).
    return fail("error", verbose ? std::string(e.what()) : e.message(), 1);
  } catch (const std::bad_alloc&) {
    // Sizes are bounded where they enter, but a request can still exceed this machine's memory.
    return fail("error", "out of memory (try a smaller --batch or fewer examples)", 1);
  } catch (const std::exception& e) {
    return fail("internal error", e.what(), 3);
  }
  return 0;
}
