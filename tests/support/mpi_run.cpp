// Running the aegis tool under mpirun from a test (tests/support/mpi_run.h).
#include "support/mpi_run.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

extern char** environ;

namespace aegis::testing {

std::vector<std::string> mpirun_words(int ranks) {
  std::vector<std::string> words{AEGIS_MPIEXEC, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none"};
  for (const char* w : {"--timeout", "120", "-x", "OMP_NUM_THREADS=1", "-n"}) words.push_back(w);
  words.push_back(std::to_string(ranks));
  words.push_back(cli_path());
  return words;
}

namespace {

std::string joined(const std::vector<std::string>& words) {
  std::string s;
  for (const std::string& w : words) s += (s.empty() ? "" : " ") + w;
  return s;
}

}  // namespace

CliRun run_mpi(int ranks, const std::string& args) {
  return run_command(joined(mpirun_words(ranks)) + " " + args);
}

CliRun run_one_process(const std::string& args) {
  return run_command("OMP_NUM_THREADS=1 " + cli_path() + " " + args);
}

pid_t spawn_mpi(int ranks, const std::string& args) {
  std::vector<std::string> words = mpirun_words(ranks);
  std::istringstream split(args);
  for (std::string w; split >> w;) words.push_back(w);
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int started = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return started == 0 ? pid : 0;
}

pid_t rank_pid(pid_t mpirun, int rank) {
  const std::string wanted = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  DIR* proc = opendir("/proc");
  pid_t found = 0;
  while (dirent* e = proc ? readdir(proc) : nullptr) {
    if (std::atoi(e->d_name) <= 0) continue;
    const std::string base = "/proc/" + std::string(e->d_name);
    std::ifstream stat(base + "/stat");
    const std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const std::size_t close = text.rfind(')');
    if (close == std::string::npos || text.find("(aegis)") == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    char state = 0;
    long parent = 0;
    rest >> state >> parent;
    if (parent != mpirun) continue;
    std::ifstream environ_file(base + "/environ");
    for (std::string var; std::getline(environ_file, var, '\0');)
      if (var == wanted) found = static_cast<pid_t>(std::atoi(e->d_name));
  }
  if (proc) closedir(proc);
  return found;
}

}  // namespace aegis::testing
