// Sweep files for the analysis suites (test_analyze, test_analyze_plot): a hand-made Cohen file
// whose numbers are worked out by hand, and fake sweeps whose certificates depend on idx alone.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "certify/sweep.h"

namespace aegis::certify::fixtures {

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// 8 inputs: 5 correct (radii 0.9, 0.3, 0.25, 1.5, 0), 1 wrong with a radius, 2 abstentions.
inline const char* const kHandMade =
    "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
    "0\t1\t1\t0.9\t1\t0:00:01.5\n"
    "1\t2\t2\t0.3\t1\t0:00:01.5\n"
    "2\t3\t-1\t0.0\t0\t0:00:01.5\n"
    "3\t4\t5\t0.7\t0\t0:00:01.5\n"
    "4\t0\t0\t0.25\t1\t0:00:01.5\n"
    "5\t1\t1\t1.5\t1\t0:00:01.5\n"
    "6\t2\t-1\t0.0\t0\t0:00:01.5\n"
    "7\t3\t3\t0.0\t1\t0:00:01.5\n";

inline SweepSettings settings_for(double sigma, Shard shard = {}) {
  SweepSettings s;
  s.smoothing.sigma = sigma;
  s.smoothing.n0 = 10;
  s.smoothing.n = 100;
  s.model = "m";
  s.model_fingerprint = "fnv1a64:00000000000000aa";
  s.data = "digits";
  s.inputs.shard = shard;
  return s;
}

// Certificates that depend on idx alone, as real ones do for a fixed model and seed.
inline std::string fake_sweep(const std::string& path, double sigma, Shard shard) {
  SweepFile file(path, settings_for(sigma, shard), OpenMode::Create);
  std::vector<SweepInput> inputs;
  for (std::int64_t i : select_inputs(200, 1, 0, shard)) inputs.push_back({i, i % 10});
  run_sweep(file, inputs, 3, [sigma](const std::vector<std::int64_t>& idx) {
    std::vector<Certificate> out(idx.size());
    for (std::size_t k = 0; k < idx.size(); ++k) {
      if (idx[k] % 9 == 4) continue;  // abstain
      out[k].prediction = idx[k] % 6 == 0 ? (idx[k] + 3) % 10 : idx[k] % 10;
      out[k].radius = sigma * static_cast<double>(idx[k] % 17) / 8.0;
    }
    return out;
  });
  return path;
}

}  // namespace aegis::certify::fixtures
