// The per-example TSV (attacks/per_example.h).
#include "attacks/per_example.h"

#include <cstdio>
#include <string>

#include "core/atomic_file.h"

namespace aegis::attacks {

void write_per_example_tsv(const std::string& path, const std::vector<PerExampleRow>& rows) {
  std::string text = "idx\tlabel\tclean_predict\tadv_predict\tbroken_by\tperturbation_norm\n";
  char norm[32];
  for (const PerExampleRow& r : rows) {
    std::snprintf(norm, sizeof norm, "%.9g", r.perturbation_norm);
    text += std::to_string(r.index) + "\t" + std::to_string(r.label) + "\t" + std::to_string(r.clean_prediction) +
            "\t" + std::to_string(r.adversarial_prediction) + "\t" + r.broken_by + "\t" + norm + "\n";
  }
  write_file_atomically(path, [&](int fd) { return write_fully(fd, text.data(), text.size()); });
}

}  // namespace aegis::attacks
