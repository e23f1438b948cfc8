// aegis — command-line front end. `aegis --help` lists the commands.
#include <iostream>
#include <map>

#include "commands.h"
#include "runtime/error.h"

int main(int argc, char** argv) {
  CLI::App app{"aegis " AEGIS_VERSION " — private and robust deep learning (DP-SGD, attacks, certification)"};
  app.require_subcommand(1);
  std::map<CLI::App*, aegis::app::Runner> runners;
  auto reg = [&](aegis::app::Runner (*add)(CLI::App&)) {
    const std::size_t before = app.get_subcommands({}).size();
    aegis::app::Runner r = add(app);
    runners[app.get_subcommands({})[before]] = std::move(r);
  };
  reg(aegis::app::add_info);
  reg(aegis::app::add_train);
  reg(aegis::app::add_eval);
  reg(aegis::app::add_demo);
  reg(aegis::app::add_account);
  reg(aegis::app::add_attack);
  reg(aegis::app::add_pixeldp);
  reg(aegis::app::add_verify);
  reg(aegis::app::add_certify);
  reg(aegis::app::add_analyze);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [cmd, run] : runners)
      if (cmd->parsed()) return run();
  } catch (const aegis::Error& e) {
    std::cerr << "aegis: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "aegis: internal error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
