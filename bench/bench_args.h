// The command line of a benchmark program whose options are all integers: "--name value" pairs,
// each name one of `options`; anything else is reported on stderr and the program exits with 2.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

namespace aegis::bench {

inline void parse_integer_options(int argc, char** argv,
                                  const std::vector<std::pair<std::string, std::int64_t*>>& options) {
  for (int i = 1; i < argc; i += 2) {
    const std::string name = argv[i];
    std::int64_t* target = nullptr;
    for (const auto& [known, value] : options)
      if (name == known) target = value;
    if (target == nullptr || i + 1 >= argc) {
      std::cerr << (target ? "missing value for " : "unknown option ") << name << "\n";
      std::exit(2);
    }
    *target = std::stoll(argv[i + 1]);
  }
}

}  // namespace aegis::bench
